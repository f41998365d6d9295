//! Line charts as standalone SVG, for the scaling curves the runner draws into
//! docs/performance.md: pictures drawn by the bench itself, shown by GitHub as they
//! are, with no external service.
//!
//! Hand-written on purpose: a few line charts (linear or log10 axes, ticks, a
//! legend) take a couple of hundred lines, and need no plotting crate (with its
//! fonts and dependencies). The output is deterministic, so the same numbers redraw
//! the same file.

use std::fmt::Write as _;

/// The document's size; the plot area, with the legend to its right.
const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 430.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 560.0;
const TOP: f64 = 80.0;
const BOTTOM: f64 = 370.0;
const LEGEND: f64 = 578.0;
/// The legend box's width, to the document's right edge.
const LEGEND_WIDTH: f64 = WIDTH - LEGEND - 8.0;
/// The longest subtitle line, in characters; a longer subtitle wraps at a space.
const SUBTITLE_CHARS_MAX: usize = 130;
/// The attribute of a dashed line, at `usize::from(dashed)`.
const DASH: [&str; 2] = ["", r#" stroke-dasharray="6 4""#];
/// Distinct colours, taken in turn (and again from the start past the last).
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of a chart: a name for the legend and its points (x, y), drawn in x order.
#[derive(Clone, Debug)]
pub struct Series {
    /// The name shown in the legend.
    pub name: String,
    /// The points (x, y), in any order; those that cannot be drawn (not finite, or
    /// not above 0 on a log axis) are left out.
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (e.g. a baseline) rather than solid.
    pub dashed: bool,
}

/// How an axis maps values: linear from 0, or log10 (values must be > 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// From 0 (or below, for negative values) to a round number at or above the
    /// largest value.
    Linear,
    /// Whole decades covering the values, a tick at each power of 10.
    Log,
}

/// One axis of a chart.
#[derive(Clone, Debug)]
pub struct Axis {
    /// What the axis measures, with its unit (e.g. "connections", "requests/s").
    pub label: String,
    /// How values are mapped along the axis.
    pub scale: Scale,
}

/// A line chart: a title, a subtitle, two axes and its lines.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The heading, at the top.
    pub title: String,
    /// A smaller, grey line under the title (e.g. the machine and the date).
    pub subtitle: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// The lines, coloured in order from a fixed palette.
    pub series: Vec<Series>,
}

impl Chart {
    /// The chart as a complete SVG 1.1 document of 720x420 pixels, with no external
    /// fonts, stylesheets or scripts. Never panics: a chart with nothing to draw
    /// still has its axes, and says "no data".
    pub fn to_svg(&self) -> String {
        let drawable = |s: Scale, v: f64| v.is_finite() && (s == Scale::Linear || v > 0.0);
        let (sx, sy) = (self.x.scale, self.y.scale);
        let lines: Vec<Vec<(f64, f64)>> = (self.series.iter())
            .map(|s| {
                let mut pts = s.points.clone();
                pts.retain(|&(x, y)| drawable(sx, x) && drawable(sy, y));
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                pts
            })
            .collect();
        let xs = Span::new(sx, lines.iter().flatten().map(|p| p.0));
        let ys = Span::new(sy, lines.iter().flatten().map(|p| p.1));
        let px = |x: f64| LEFT + xs.frac(x) * (RIGHT - LEFT);
        let py = |y: f64| BOTTOM - ys.frac(y) * (BOTTOM - TOP);
        let (mid, middle) = ((LEFT + RIGHT) / 2.0, (TOP + BOTTOM) / 2.0);

        let mut out = format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12" fill="#222" text-anchor="middle">
<rect width="100%" height="100%" fill="white"/>
"##
        );
        let (big, grey) = (
            r#" font-size="18" font-weight="bold""#,
            r##" fill="#666" font-size="11""##,
        );
        text(&mut out, WIDTH / 2.0, 28.0, big, &self.title);
        for (i, line) in wrap(&self.subtitle, SUBTITLE_CHARS_MAX).iter().enumerate() {
            text(&mut out, WIDTH / 2.0, 48.0 + 14.0 * i as f64, grey, line);
        }
        text(&mut out, mid, BOTTOM + 42.0, "", &self.x.label);
        let rotated = format!(r#" transform="rotate(-90 18 {middle})""#);
        text(&mut out, 18.0, middle, &rotated, &self.y.label);

        // Grid lines, then tick marks and axes, then tick labels.
        let (mut grid, mut marks) = (String::new(), String::new());
        let (mut x_labels, mut y_labels) = (String::new(), String::new());
        for (v, x) in xs.ticks(px) {
            let _ = write!(grid, "M{x} {TOP}V{BOTTOM}");
            let _ = write!(marks, "M{x} {BOTTOM}v5");
            let _ = write!(x_labels, r#"<text x="{x}" y="389">{v}</text>"#);
        }
        for (v, y) in ys.ticks(py) {
            let _ = write!(grid, "M{LEFT} {y}H{RIGHT}");
            let _ = write!(marks, "M{LEFT} {y}h-5");
            let _ = write!(y_labels, r#"<text x="62" y="{y}" dy="4">{v}</text>"#);
        }
        let _ = write!(marks, "M{LEFT} {TOP}V{BOTTOM}H{RIGHT}");
        let _ = writeln!(out, r##"<path d="{grid}" fill="none" stroke="#e6e6e6"/>"##);
        let _ = writeln!(out, r##"<path d="{marks}" fill="none" stroke="#333"/>"##);
        let _ = writeln!(out, r#"<g font-size="11">{x_labels}</g>"#);
        let _ = writeln!(out, r#"<g font-size="11" text-anchor="end">{y_labels}</g>"#);

        // The lines, each with a dot at every point.
        let mut drawn = 0;
        for (i, (s, pts)) in self.series.iter().zip(&lines).enumerate() {
            let pixels: Vec<(String, String)> = (pts.iter().map(|&(x, y)| (px(x), py(y))))
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| (num(x), num(y)))
                .collect();
            if pixels.is_empty() {
                continue;
            }
            drawn += pixels.len();
            let (colour, dash) = (PALETTE[i % PALETTE.len()], DASH[usize::from(s.dashed)]);
            let points: Vec<String> = pixels.iter().map(|(x, y)| format!("{x},{y}")).collect();
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                points.join(" ")
            );
            let _ = write!(out, r#"<g fill="{colour}">"#);
            for (x, y) in &pixels {
                let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="3"/>"#);
            }
            out.push_str("</g>\n");
        }
        if drawn == 0 {
            let note = r##" font-size="14" fill="#999""##;
            text(&mut out, mid, middle, note, "no data");
        }

        // The legend: a sample of each line, and its name.
        if !self.series.is_empty() {
            let h = 8 + 18 * self.series.len();
            let _ = writeln!(
                out,
                r##"<rect x="{LEGEND}" y="{TOP}" width="{LEGEND_WIDTH}" height="{h}" fill="white" stroke="#ccc"/>"##
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            let (colour, dash) = (PALETTE[i % PALETTE.len()], DASH[usize::from(s.dashed)]);
            let name = esc(&s.name);
            let y = TOP as usize + 13 + 18 * i;
            let _ = writeln!(
                out,
                r#"<g transform="translate({LEGEND} {y})"><path d="M8 0h24" stroke="{colour}" stroke-width="2"{dash}/><circle cx="20" r="3" fill="{colour}"/><text x="40" dy="4" text-anchor="start">{name}</text></g>"#
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

/// `s` in lines of at most about `max` characters, broken at spaces.
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split(' ') {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= max => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// Appends a `<text>` at (x, y) with more attributes `attrs` (each after a space),
/// saying `s` (escaped); nothing when `s` is empty.
fn text(out: &mut String, x: f64, y: f64, attrs: &str, s: &str) {
    if !s.is_empty() {
        let (x, y, s) = (num(x), num(y), esc(s));
        let _ = writeln!(out, r#"<text x="{x}" y="{y}"{attrs}>{s}</text>"#);
    }
}

/// Where an axis goes: its ends (in data units, or decades for log), and its ticks.
struct Span {
    log: bool,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Span {
    /// The span covering `values` (all drawable on `scale`).
    fn new(scale: Scale, values: impl Iterator<Item = f64>) -> Self {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let log = scale == Scale::Log;
        let (lo, hi, ticks) = if log {
            let (a, b) = log_decades(min, max);
            (f64::from(a), f64::from(b), (a..=b).map(pow10).collect())
        } else {
            let t = linear_ticks(min.min(0.0), max.max(0.0));
            (t[0], t[t.len() - 1], t)
        };
        Span { log, lo, hi, ticks }
    }

    /// Where `v` is along the axis, 0 at the start and 1 at the end.
    fn frac(&self, v: f64) -> f64 {
        let t = if self.log { v.log10() } else { v };
        (t - self.lo) / (self.hi - self.lo)
    }

    /// Each tick's label and its position (`at`), both formatted; the finite ones.
    fn ticks(&self, at: impl Fn(f64) -> f64) -> Vec<(String, String)> {
        (self.ticks.iter().map(|&v| (v, at(v))))
            .filter(|(v, p)| v.is_finite() && p.is_finite())
            .map(|(v, p)| (label(v), num(p)))
            .collect()
    }
}

/// `10^k`, the nearest double for negative `k` too (`1 / 10^-k`).
fn pow10(k: i32) -> f64 {
    if k < 0 {
        return 1.0 / pow10(-k);
    }
    10f64.powi(k)
}

/// The ticks of a linear axis covering `lo..=hi` (`lo <= 0 <= hi`): multiples of a
/// step of 1, 2, 2.5 or 5 x 10^k, the smallest giving at most 7 intervals (so 4 to
/// 8 ticks); 0..=1 when there is no range (or no finite one).
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let range = hi - lo;
    if !(range.is_finite() && range > 0.0) {
        return linear_ticks(0.0, 1.0);
    }
    let e = range.log10().floor() as i32;
    let mut best = (0, 1, 1.0, 0);
    'search: for k in (e - 2)..=(e + 1) {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let step = m * pow10(k);
            let below = (-lo / step - 1e-9).ceil().max(0.0) as i64;
            let above = (hi / step - 1e-9).ceil().max(0.0) as i64;
            best = (-below, above, m, k);
            if below + above <= 7 {
                break 'search;
            }
        }
    }
    let (from, to, m, k) = best;
    // i * m is exact, so each tick is the double nearest its decimal value.
    let tick = |i: i64| match k {
        0.. => i as f64 * m * pow10(k),
        _ => i as f64 * m / pow10(-k),
    };
    (from..=to).map(tick).collect()
}

/// The whole decades `10^a..=10^b` covering `min..=max` (both > 0), at least one;
/// 1..=10 when there are no values (`min > max`).
fn log_decades(min: f64, max: f64) -> (i32, i32) {
    if min > max {
        return (0, 1);
    }
    // The largest power of 10 at or below `v`, correcting log10's rounding.
    let floor = |v: f64| match v.log10().floor() as i32 {
        e if pow10(e) > v => e - 1,
        e if pow10(e + 1) <= v => e + 1,
        e => e,
    };
    let (a, b) = (floor(min), floor(max));
    let b = if pow10(b) < max { b + 1 } else { b };
    (a, b.max(a + 1))
}

/// A tick label: thousands as "k", millions as "M", at most 6 decimals and no
/// trailing zeros (250000 -> "250k", 1500000 -> "1.5M", 0.5 -> "0.5").
fn label(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        a if a != 0.0 && a < 1e-4 => return format!("{v:e}"),
        _ => (v, ""),
    };
    format!("{}{suffix}", trim(&format!("{scaled:.6}")))
}

/// A number for the SVG's geometry: at most 2 decimals, no trailing zeros.
fn num(v: f64) -> String {
    trim(&format!("{v:.2}"))
}

/// `s` (a formatted number) without trailing zeros after the point, nor "-0".
fn trim(s: &str) -> String {
    let t = match s.contains('.') {
        true => s.trim_end_matches('0').trim_end_matches('.'),
        false => s,
    };
    if t == "-0" { "0".into() } else { t.into() }
}

/// `s` as XML text or attribute content.
fn esc(s: &str) -> String {
    (s.replace('&', "&amp;").replace('<', "&lt;"))
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use Scale::{Linear, Log};

    fn chart(x: Scale, y: Scale, series: &[(&str, &[(f64, f64)])]) -> Chart {
        let axis = |label: &str, scale| Axis {
            label: label.into(),
            scale,
        };
        let series = series.iter().map(|&(name, points)| Series {
            name: name.into(),
            points: points.to_vec(),
            dashed: name == "hello",
        });
        let (title, subtitle) = ("Reads <scaling>".into(), "2 cores & \"fast\"".into());
        let (x, y) = (axis("connections", x), axis("requests/s", y));
        Chart {
            title,
            subtitle,
            x,
            y,
            series: series.collect(),
        }
    }

    /// The points of each polyline, in order.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        let mut lines = vec![];
        for line in svg.split("<polyline points=\"").skip(1) {
            let numbers = line.split('"').next().unwrap().split([' ', ',']);
            let n: Vec<f64> = numbers.map(|n| n.parse().unwrap()).collect();
            lines.push(n.chunks(2).map(|p| (p[0], p[1])).collect());
        }
        lines
    }

    #[test]
    fn a_long_subtitle_wraps_at_spaces() {
        let words = "word ".repeat(60);
        let lines = wrap(words.trim_end(), SUBTITLE_CHARS_MAX);
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.len() <= SUBTITLE_CHARS_MAX));
        assert_eq!(lines.join(" "), words.trim_end());
    }

    #[test]
    fn a_deterministic_svg_document_with_every_series_in_the_legend() {
        let foldbook = [(1.0, 900.0), (10.0, 8000.0), (100.0, 41000.0)];
        let hello = [(100.0, 52e3), (1.0, 1e3), (f64::NAN, 5.0), (10.0, 9.5e3)];
        let odd = ("a<b & \"c\" > d", [(1.0, 1.0 / 3.0)].as_slice());
        let c = chart(
            Log,
            Linear,
            &[("foldbook", &foldbook), ("hello", &hello), odd],
        );
        let svg = c.to_svg();
        assert_eq!(svg, c.to_svg());
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
        assert!(svg.contains(">foldbook</text>") && svg.contains(">hello</text>"));
        assert!(svg.contains(">a&lt;b &amp; &quot;c&quot; &gt; d</text>"));
        assert!(svg.contains(">Reads &lt;scaling&gt;<"));
        assert!(svg.contains(">2 cores &amp; &quot;fast&quot;<"));
        assert!(!svg.contains("a<b") && !svg.contains("<scaling>"));
        let lens: Vec<usize> = polylines(&svg).iter().map(Vec::len).collect();
        assert_eq!(lens, [3, 3, 1]);
        // hello's line and its legend; a dot per point and per legend entry.
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        assert_eq!(svg.matches(r#"r="3""#).count(), 7 + 3);
        assert_eq!(svg.matches(r##"stroke="#1f77b4""##).count(), 2);
        assert_eq!(svg.matches(r##"stroke="#d62728""##).count(), 2);
        // Linear y up to 52000: steps of 10k, up to 60k; log x from 1 to 100.
        assert!(svg.contains(">60k</text>") && !svg.contains(">70k</text>"));
        assert!(svg.contains(">1</text>") && svg.contains(">100</text>"));
        assert!(!svg.contains("no data"));
        // Every number in an attribute has at most 2 decimals.
        for value in svg.split('"').skip(1).step_by(2) {
            for n in value.split([' ', ',']).filter(|n| n.parse::<f64>().is_ok()) {
                let decimals = n.split_once('.').map_or(0, |(_, d)| d.len());
                assert!(decimals <= 2, "{n} in {value}");
            }
        }
    }

    #[test]
    fn points_are_drawn_in_x_order_to_scale() {
        let s = [(2.0, 1.0), (0.0, 3.0), (1.0, 2.0)];
        let svg = chart(Linear, Linear, &[("s", &s)]).to_svg();
        // x from 0 to 2 over LEFT..RIGHT, y from 0 to 3 over BOTTOM..TOP (steps of
        // 0.5): the middle point halfway across, a third of the way up.
        let third = |a: f64, b: f64| ((a + (b - a) / 3.0) * 100.0).round() / 100.0;
        let want = [
            (LEFT, TOP),
            ((LEFT + RIGHT) / 2.0, third(TOP, BOTTOM)),
            (RIGHT, third(BOTTOM, TOP)),
        ];
        assert_eq!(polylines(&svg), [want]);
        assert!(svg.contains(">2.5</text>") && !svg.contains(">3.5</text>"));
    }

    #[test]
    fn undrawable_points_never_make_nan_or_inf() {
        let inf = f64::INFINITY;
        let bad = [(f64::NAN, 1.0), (1.0, inf), (-inf, 2.0), (-3.0, 4.0)];
        let bad = [bad.as_slice(), &[(0.0, 5.0), (2.0, -1.0)]].concat();
        let good = [bad.as_slice(), &[(10.0, 100.0)]].concat();
        for (x, y) in [(Log, Log), (Linear, Log), (Log, Linear), (Linear, Linear)] {
            for series in [vec![("bad", &*bad), ("good", &good)], vec![("bad", &bad)]] {
                let svg = chart(x, y, &series).to_svg();
                assert!(!svg.contains("NaN") && !svg.to_lowercase().contains("inf"));
            }
        }
        // On log-log, only (10, 100) can be drawn: at the bottom left.
        let svg = chart(Log, Log, &[("bad", &bad), ("good", &good)]).to_svg();
        assert_eq!(polylines(&svg), [vec![(LEFT, BOTTOM)]]);
        // Nothing to draw: still a chart, with its axes and a note.
        for scale in [Linear, Log] {
            let none = chart(scale, scale, &[]).to_svg();
            let nan = chart(scale, scale, &[("x", &bad[..3])]).to_svg();
            for svg in [none, nan] {
                assert!(svg.contains(">no data<") && svg.contains(">1</text>"));
                assert!(polylines(&svg).is_empty() && svg.ends_with("</svg>\n"));
            }
        }
    }

    #[test]
    fn linear_axes_end_at_a_nice_number() {
        let ticks = |max| linear_ticks(0.0, max);
        assert_eq!(ticks(87.0), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(0.93), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(4200.0), [0.0, 1e3, 2e3, 3e3, 4e3, 5e3]);
        assert_eq!(ticks(0.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(7.5), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(ticks(0.03), [0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03]);
        let around_zero = linear_ticks(-15.0, 30.0);
        assert_eq!(around_zero, [-20.0, -10.0, 0.0, 10.0, 20.0, 30.0]);
        for max in [0.003, 0.7, 1.0, 12.0, 999.0, 1234.5, 2.6e6, 1e300] {
            let t = ticks(max);
            let (n, top, before) = (t.len(), t[t.len() - 1], t[t.len() - 2]);
            assert!((4..=8).contains(&n) && top >= max && before < max, "{t:?}");
        }
    }

    #[test]
    fn log_axes_span_whole_decades() {
        assert_eq!(log_decades(1.2e3, 3.4e6), (3, 7));
        assert_eq!(log_decades(1e3, 1e6), (3, 6));
        assert_eq!(log_decades(0.001, 0.5), (-3, 0));
        assert_eq!(log_decades(5.0, 5.0), (0, 1));
        assert_eq!(log_decades(f64::INFINITY, f64::NEG_INFINITY), (0, 1));
        let s = [(1.0, 1.2e3), (2.0, 3.4e6)];
        let svg = chart(Linear, Log, &[("s", &s)]).to_svg();
        for l in ["1k", "10k", "100k", "1M", "10M"] {
            assert!(svg.contains(&format!(">{l}</text>")), "{l}");
        }
        assert!(!svg.contains(">100</text>") && !svg.contains(">100M</text>"));
    }

    #[test]
    fn labels_are_short() {
        let values = [250e3, 1.5e6, 1e7, 0.5, 2.0, 0.0, -2500.0];
        let want = ["250k", "1.5M", "10M", "0.5", "2", "0", "-2.5k"];
        assert_eq!(values.map(label), want);
        let more = [label(0.1 + 0.2), label(0.015), label(1e-5), label(999.5)];
        assert_eq!(more, ["0.3", "0.015", "1e-5", "999.5"]);
        assert_eq!([num(-0.001), num(123.456), num(7.0)], ["0", "123.46", "7"]);
    }
}
