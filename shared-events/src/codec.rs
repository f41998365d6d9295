//! The log line codec: encode an [`Envelope`] as one checksummed JSON line, decode and
//! verify it, and walk a log telling a torn tail from corruption. The byte-level
//! format is specified in the crate docs (`lib.rs`); the tests here keep it true.

use crate::event::{Envelope, SCHEMA_VERSION};
use crate::market::Symbol;
use std::io::{self, Read};

/// Longest line a reader accepts, newline included. The writer never produces more:
/// an event is bounded by `FILLS_PER_EVENT_MAX` fills of bounded size.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// The fixed tail of every line before the newline: `,"crc":"` + 8 lowercase hex + `"}`.
const CRC_PREFIX: &[u8] = b",\"crc\":\"";
const CRC_SUFFIX_LEN: usize = CRC_PREFIX.len() + 8 + 2;

/// Bytes read per `read` call when scanning a whole log.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Why one line is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line does not end with a \"crc\" member")]
    NoChecksum,
    #[error("checksum mismatch: line says {stored:08x}, bytes give {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("line is not a valid envelope: {0}")]
    Json(String),
    #[error(
        "schema version {found} is not one this build reads (versions {}..={SCHEMA_VERSION}; a newer version needs a newer build)",
        crate::upcast::SCHEMA_VERSION_MIN
    )]
    Version { found: u32 },
    #[error("a schema version {from} event cannot be upcast: {message}")]
    Upcast { from: u32, message: String },
    #[error("line is longer than {LINE_BYTES_MAX} bytes")]
    TooLong,
    #[error("seq {found} where seq {expected} was expected")]
    Seq { expected: u64, found: u64 },
}

/// Appends `env` as one log line (terminated by `\n`) to `buf`.
pub fn encode_into(buf: &mut Vec<u8>, env: &Envelope) {
    let start = buf.len();
    serde_json::to_writer(&mut *buf, env).expect("serializing an envelope to memory cannot fail");
    let closing = buf.pop();
    assert_eq!(
        closing,
        Some(b'}'),
        "an envelope serializes as a JSON object"
    );
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(CRC_PREFIX);
    let mut hex = [0u8; 8];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    buf.extend_from_slice(&hex);
    buf.extend_from_slice(b"\"}\n");
    debug_assert!(buf.len() - start <= LINE_BYTES_MAX);
}

/// Encodes one envelope as a line, `\n` included.
pub fn encode(env: &Envelope) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    encode_into(&mut buf, env);
    buf
}

fn parse_hex8(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(nibble))
    })
}

/// Verifies and decodes one line, without its trailing `\n`.
pub fn decode_line(line: &[u8]) -> Result<Envelope, LineError> {
    verify_checksum(line)?;
    // The current version decodes directly; anything else goes through the version
    // check and the upcasters. The line is checked to be UTF-8 once, as a whole:
    // parsed from bytes, every string in it would be checked on its own, which cost
    // more than the check of the whole line.
    let text = std::str::from_utf8(line).map_err(|e| LineError::Json(e.to_string()))?;
    match serde_json::from_str::<Envelope>(text) {
        Ok(env) if env.v == SCHEMA_VERSION || crate::upcast::decodes_as_current(env.v) => Ok(env),
        _ => decode_versioned(line),
    }
}

/// The head of a line: where it is, when it was committed, what happened where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineHead {
    pub seq: u64,
    pub ts_us: u64,
    /// The event type ([`crate::Event::kind`]).
    pub kind: &'static str,
    pub market: Symbol,
}

/// Verifies a line's checksum (as [`decode_line`] does) and reads its head without
/// decoding the rest: what a reader that folds only some markets needs of a line of
/// another. Only a line of the current schema version whose members come in the
/// order the writer emits them is read so (`Ok(None)` otherwise: decode it). The
/// checksum proves the bytes are the writer's, and the writer writes only valid
/// envelopes.
pub fn peek_head(line: &[u8]) -> Result<Option<LineHead>, LineError> {
    verify_checksum(line)?;
    Ok(head_of(line))
}

/// The head of a line laid out as the writer writes it, or `None`.
fn head_of(line: &[u8]) -> Option<LineHead> {
    /// A decimal number (no sign, no leading `+`) and what follows it.
    fn number(bytes: &[u8]) -> Option<(u64, &[u8])> {
        let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && bytes[0] == b'0') {
            return None;
        }
        let n = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
        Some((n, &bytes[digits..]))
    }
    let (seq, rest) = number(line.strip_prefix(b"{\"seq\":")?)?;
    let (ts_us, rest) = number(rest.strip_prefix(b",\"ts_us\":")?)?;
    let (v, rest) = number(rest.strip_prefix(b",\"v\":")?)?;
    if v != u64::from(SCHEMA_VERSION) {
        return None;
    }
    let rest = rest.strip_prefix(b",\"event\":{\"type\":\"")?;
    let (kind, rest) = [
        "OrderPlaced",
        "OrderCancelled",
        "OrderAmended",
        "OrdersCancelled",
    ]
    .into_iter()
    .find_map(|kind| Some((kind, rest.strip_prefix(kind.as_bytes())?)))?;
    let rest = rest.strip_prefix(b"\",\"data\":{\"market\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    let market = Symbol::parse(std::str::from_utf8(&rest[..end]).ok()?).ok()?;
    Some(LineHead {
        seq,
        ts_us,
        kind,
        market,
    })
}

/// Checks a line's length and its `crc` suffix against its bytes.
fn verify_checksum(line: &[u8]) -> Result<(), LineError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(LineError::TooLong);
    }
    if line.len() < CRC_SUFFIX_LEN + 2 {
        return Err(LineError::NoChecksum);
    }
    let (body, suffix) = line.split_at(line.len() - CRC_SUFFIX_LEN);
    if !suffix.starts_with(CRC_PREFIX) || !suffix.ends_with(b"\"}") {
        return Err(LineError::NoChecksum);
    }
    let stored =
        parse_hex8(&suffix[CRC_PREFIX.len()..CRC_PREFIX.len() + 8]).ok_or(LineError::NoChecksum)?;
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(LineError::Checksum { stored, computed });
    }
    Ok(())
}

/// Decodes a line of any version: refuses one this build does not read, brings an
/// older event to the current shape through [`crate::upcast`].
fn decode_versioned(line: &[u8]) -> Result<Envelope, LineError> {
    let json = |e: serde_json::Error| LineError::Json(e.to_string());
    let mut value: serde_json::Value = serde_json::from_slice(line).map_err(json)?;
    let v = value
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| LineError::Json("no schema version \"v\"".to_owned()))?;
    let v = u32::try_from(v).unwrap_or(u32::MAX);
    if !(crate::upcast::SCHEMA_VERSION_MIN..=SCHEMA_VERSION).contains(&v) {
        return Err(LineError::Version { found: v });
    }
    if v < SCHEMA_VERSION {
        let event = value
            .get_mut("event")
            .ok_or_else(|| LineError::Json("no \"event\"".to_owned()))?;
        crate::upcast::upcast(v, event)
            .map_err(|message| LineError::Upcast { from: v, message })?;
    }
    serde_json::from_value(value).map_err(json)
}

/// A complete line that failed to decode, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} (byte offset {offset}, expected seq {expected_seq}): {reason}")]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// Byte offset of the line's first byte.
    pub offset: u64,
    /// The seq this line should have carried.
    pub expected_seq: u64,
    /// Length of the line including its `\n` (or up to the end of the data).
    pub len: u64,
    pub reason: LineError,
}

/// Where a reader is in a log: everything before `offset` was decoded and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogCursor {
    /// Byte offset just past the last complete, valid line.
    pub offset: u64,
    /// Number of lines consumed so far.
    pub lines: u64,
    /// The seq the next line must carry.
    pub next_seq: u64,
}

impl LogCursor {
    /// A cursor at the start of a log whose first event is seq 1.
    pub fn start() -> Self {
        LogCursor {
            offset: 0,
            lines: 0,
            next_seq: 1,
        }
    }

    /// Decodes the complete lines at the front of `buf`, which holds the log's bytes
    /// from `self.offset` on, passing each envelope and its raw line (with `\n`) to
    /// `on_event`, and advancing the cursor past it. Stops before an incomplete final
    /// line (returns the bytes consumed) or at the first bad line (returns it, cursor
    /// left before it). Seq continuity is part of validity.
    pub fn decode_lines(
        &mut self,
        buf: &[u8],
        on_event: impl FnMut(Envelope, &[u8]),
    ) -> Result<usize, BadLine> {
        self.decode_lines_with(
            buf,
            |line| decode_line(line).map(|env| (env.seq, env)),
            on_event,
        )
    }

    /// [`LogCursor::decode_lines`] with each line decoded by `decode` (without its
    /// newline) into its seq and a `T`: a reader that needs less of some lines.
    pub fn decode_lines_with<T>(
        &mut self,
        buf: &[u8],
        mut decode: impl FnMut(&[u8]) -> Result<(u64, T), LineError>,
        mut on_event: impl FnMut(T, &[u8]),
    ) -> Result<usize, BadLine> {
        let mut pos = 0;
        while let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) {
            let raw = &buf[pos..pos + nl + 1];
            let bad = |reason| BadLine {
                line: self.lines + 1,
                offset: self.offset,
                expected_seq: self.next_seq,
                len: raw.len() as u64,
                reason,
            };
            let (seq, env) = decode(&raw[..nl]).map_err(bad)?;
            if seq != self.next_seq {
                return Err(bad(LineError::Seq {
                    expected: self.next_seq,
                    found: seq,
                }));
            }
            self.offset += raw.len() as u64;
            self.lines += 1;
            self.next_seq += 1;
            on_event(env, raw);
            pos += nl + 1;
        }
        if buf.len() - pos > LINE_BYTES_MAX {
            return Err(BadLine {
                line: self.lines + 1,
                offset: self.offset,
                expected_seq: self.next_seq,
                len: (buf.len() - pos) as u64,
                reason: LineError::TooLong,
            });
        }
        Ok(pos)
    }
}

/// What a full scan of a log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Where the valid log ends: the next line goes here.
    pub cursor: LogCursor,
    /// A torn write at the end: an incomplete last line, or a bad last line.
    pub torn: Option<TornTail>,
}

/// Bytes at the end of a log that are not a complete valid line: what a crash in the
/// middle of a write leaves. They were never acknowledged, so recovery cuts them off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// Where the torn bytes start (= where the log is cut).
    pub offset: u64,
    /// How many bytes would be dropped.
    pub bytes: u64,
    /// Why the tail is not a valid line.
    pub reason: String,
}

/// Why a log cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("log is corrupt at {0}; refusing to guess (see docs/durability.md)")]
    Corrupt(BadLine),
    #[error("reading the log: {0}")]
    Io(#[from] io::Error),
}

/// Reads a whole log from `reader`, starting at `cursor` (the reader is positioned
/// there), and calls `on_event` for every valid line in order, with the log offset
/// just past that line (for progress reports). Recovery rules: an
/// incomplete last line, or a bad line with nothing after it, is a torn tail (reported,
/// not an error); a bad line with anything after it is corruption.
pub fn scan<R: Read + Send>(
    reader: R,
    cursor: LogCursor,
    on_event: impl FnMut(Envelope, u64),
) -> Result<ScanReport, ScanError> {
    scan_until(reader, cursor, u64::MAX, on_event)
}

/// [`scan`], but stops reading once event `last_seq` was passed to `on_event` (later
/// events in the same read chunk are decoded and checked but not passed on; the
/// report's cursor is then where reading stopped, past `last_seq`).
///
/// Reading and decoding (checksums, JSON) run on a second thread, a few thousand
/// events ahead of `on_event`, so a replay uses two cores: one decodes while the
/// other folds.
pub fn scan_until<R: Read + Send>(
    reader: R,
    cursor: LogCursor,
    last_seq: u64,
    mut on_event: impl FnMut(Envelope, u64),
) -> Result<ScanReport, ScanError> {
    /// Events per hand-over between the decoding thread and the caller's.
    const BATCH_EVENTS: usize = 4096;
    /// Batches decoded ahead: bounds the memory the decoder may run ahead by.
    const BATCHES_AHEAD: usize = 4;
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Envelope, u64)>>(BATCHES_AHEAD);
        let decoder = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH_EVENTS);
            let result = scan_sequential(reader, cursor, last_seq, |env, end| {
                batch.push((env, end));
                if batch.len() == BATCH_EVENTS {
                    // The receiver only goes away if `on_event` panicked.
                    let _ = tx.send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH_EVENTS),
                    ));
                }
            });
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            result
        });
        for batch in rx {
            for (env, end) in batch {
                on_event(env, end);
            }
        }
        decoder.join().expect("the log decoder thread panicked")
    })
}

/// [`scan_until`] on the caller's thread alone.
fn scan_sequential<R: Read>(
    mut reader: R,
    mut cursor: LogCursor,
    last_seq: u64,
    mut on_event: impl FnMut(Envelope, u64),
) -> Result<ScanReport, ScanError> {
    let mut buf: Vec<u8> = Vec::with_capacity(SCAN_CHUNK_BYTES);
    let mut chunk = vec![0u8; SCAN_CHUNK_BYTES];
    loop {
        let n = read_some(&mut reader, &mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        let eof = n == 0;
        let buf_start = cursor.offset;
        let mut end = cursor.offset;
        match cursor.decode_lines(&buf, |env, raw| {
            end += raw.len() as u64;
            if env.seq <= last_seq {
                on_event(env, end)
            }
        }) {
            Ok(used) => {
                buf.drain(..used);
                if cursor.next_seq > last_seq {
                    return Ok(ScanReport { cursor, torn: None });
                }
                if eof {
                    let torn = (!buf.is_empty()).then(|| TornTail {
                        offset: cursor.offset,
                        bytes: buf.len() as u64,
                        reason: "incomplete last line (no newline)".to_owned(),
                    });
                    return Ok(ScanReport { cursor, torn });
                }
            }
            Err(bad) => {
                debug_assert_eq!(
                    bad.offset, cursor.offset,
                    "the cursor stops before a bad line"
                );
                buf.drain(..(bad.offset - buf_start) as usize);
                // A bad line is a torn tail only if nothing at all follows it.
                let after_bad = buf.len() as u64 > bad.len;
                if after_bad || read_some(&mut reader, &mut chunk)? > 0 {
                    return Err(ScanError::Corrupt(bad));
                }
                if joins_two_lines(&buf[..bad.len as usize], bad.expected_seq) {
                    return Err(ScanError::Corrupt(bad));
                }
                return Ok(ScanReport {
                    cursor,
                    torn: Some(TornTail {
                        offset: bad.offset,
                        bytes: bad.len,
                        reason: format!("bad last line: {}", bad.reason),
                    }),
                });
            }
        }
    }
}

/// Whether a bad last line is two valid lines, seqs `expected_seq` and the next,
/// joined by one byte where the first one's newline was. A torn append only loses
/// the end of what it wrote, never a newline in the middle, so this is corruption (a
/// flipped byte in a synced line), not a torn tail to cut off with both events.
fn joins_two_lines(bad: &[u8], expected_seq: u64) -> bool {
    let bad = bad.strip_suffix(b"\n").unwrap_or(bad);
    memchr::memmem::find_iter(bad, CRC_PREFIX).any(|at| {
        let end = at + CRC_SUFFIX_LEN;
        end < bad.len()
            && decode_line(&bad[..end]).is_ok_and(|env| env.seq == expected_seq)
            && decode_line(&bad[end + 1..]).is_ok_and(|env| env.seq == expected_seq + 1)
    })
}

fn read_some<R: Read>(reader: &mut R, chunk: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(chunk) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Fill, Order, Side};
    use crate::event::Event;
    use proptest::prelude::*;

    fn placed(seq: u64) -> Envelope {
        Envelope {
            seq,
            ts_us: 1_700_000_000_000_000 + seq,
            v: SCHEMA_VERSION,
            event: Event::limit_placed(
                crate::DEFAULT_MARKET,
                Order {
                    id: seq + 10,
                    user: "alice".into(),
                    side: Side::Buy,
                    price: 100,
                    qty: 5,
                },
                vec![Fill {
                    maker_id: 3,
                    maker_user: "bob".into(),
                    price: 99,
                    qty: 2,
                }],
                3,
                None,
            ),
        }
    }

    fn log_of(n: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for seq in 1..=n {
            encode_into(&mut buf, &placed(seq));
        }
        buf
    }

    #[test]
    fn line_format_is_json_with_crc_last() {
        let line = encode(&placed(1));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with("\"}\n"));
        assert!(text.starts_with("{\"seq\":1,\"ts_us\":"), "{text}");
        let value: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(value["event"]["type"], "OrderPlaced");
        assert_eq!(value["crc"].as_str().unwrap().len(), 8);
        // The crc covers every byte before `,"crc":`.
        let body = &line[..line.len() - 1 - CRC_SUFFIX_LEN];
        let crc = format!("{:08x}", crc32c::crc32c(body));
        assert_eq!(value["crc"], crc.as_str());
    }

    #[test]
    fn a_head_is_read_only_from_a_checked_line_as_the_writer_lays_it_out() {
        let line = encode(&placed(7));
        let line = &line[..line.len() - 1];
        let head = peek_head(line).unwrap().unwrap();
        assert_eq!(
            (head.seq, head.kind, head.market),
            (7, "OrderPlaced", crate::DEFAULT_MARKET)
        );
        let mut flipped = line.to_vec();
        flipped[3] ^= 1;
        assert!(peek_head(&flipped).is_err(), "the checksum is checked");
        // Another member order, or an older version: decode it instead.
        let v1 = r#"{"seq":1,"ts_us":5,"v":1,"event":{"type":"OrderPlaced","data":{"order":{"id":1,"user":"a","side":"buy","price":1,"qty":1},"fills":[],"resting_qty":1}}"#;
        let crc = crc32c::crc32c(v1.as_bytes());
        let v1 = format!("{v1},\"crc\":\"{crc:08x}\"}}");
        assert_eq!(peek_head(v1.as_bytes()), Ok(None));
        assert!(decode_line(v1.as_bytes()).is_ok());
    }

    #[test]
    fn uppercase_crc_is_rejected() {
        let mut line = encode(&placed(1));
        line.pop();
        let crc_at = line.len() - 10;
        line[crc_at..crc_at + 8].make_ascii_uppercase();
        // Either the crc had no letters (then it still decodes) or it must fail.
        let had_letters = encode(&placed(1))[crc_at..crc_at + 8]
            .iter()
            .any(u8::is_ascii_alphabetic);
        assert_eq!(decode_line(&line).is_err(), had_letters);
    }

    #[test]
    fn scan_clean_log() {
        let log = log_of(5);
        let mut seen = vec![];
        let report = scan(&log[..], LogCursor::start(), |e, _| seen.push(e.seq)).unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert_eq!(report.torn, None);
        assert_eq!(report.cursor.offset, log.len() as u64);
        assert_eq!(report.cursor.next_seq, 6);
    }

    #[test]
    fn incomplete_last_line_is_torn() {
        let mut log = log_of(3);
        let whole = log.len();
        log.extend_from_slice(&encode(&placed(4))[..40]);
        let report = scan(&log[..], LogCursor::start(), |_, _| {}).unwrap();
        let torn = report.torn.unwrap();
        assert_eq!((torn.offset, torn.bytes), (whole as u64, 40));
        assert_eq!(report.cursor.next_seq, 4);
    }

    #[test]
    fn bad_last_line_is_torn_but_bad_middle_line_is_corrupt() {
        let mut log = log_of(3);
        let last_start = log.len() - encode(&placed(3)).len();
        log[last_start + 5] ^= 0x01;
        let report = scan(&log[..], LogCursor::start(), |_, _| {}).unwrap();
        assert_eq!(report.torn.unwrap().offset, last_start as u64);
        assert_eq!(report.cursor.next_seq, 3);

        log.extend_from_slice(&encode(&placed(4)));
        match scan(&log[..], LogCursor::start(), |_, _| {}) {
            Err(ScanError::Corrupt(bad)) => {
                assert_eq!((bad.line, bad.expected_seq), (3, 3));
                assert!(matches!(bad.reason, LineError::Checksum { .. }));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn a_lost_newline_between_the_last_two_lines_is_corruption() {
        // Found by the simulator (gateway::sim, seed 28): the two lines merge into one
        // bad last line, which must not be cut off as a torn write.
        let mut log = log_of(3);
        let newline = log.len() - encode(&placed(3)).len() - 1;
        for garbage in [b' ', 0, b'x'] {
            let mut damaged = log.clone();
            damaged[newline] = garbage;
            match scan(&damaged[..], LogCursor::start(), |_, _| {}) {
                Err(ScanError::Corrupt(bad)) => assert_eq!((bad.line, bad.expected_seq), (2, 2)),
                other => panic!("expected corruption, got {other:?}"),
            }
        }
        // A torn write after a whole line (its newline lost with what followed) is
        // still a torn tail.
        log.truncate(log.len() - 1);
        log.extend_from_slice(b"\0\0\0\n");
        let report = scan(&log[..], LogCursor::start(), |_, _| {}).unwrap();
        assert_eq!(report.cursor.next_seq, 3);
        assert!(report.torn.is_some());
    }

    #[test]
    fn scan_until_stops_after_the_given_seq() {
        let log = log_of(10);
        let mut seen = vec![];
        scan_until(&log[..], LogCursor::start(), 4, |e, _| seen.push(e.seq)).unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4]);
    }

    #[test]
    fn seq_gap_is_corruption() {
        let mut log = log_of(2);
        encode_into(&mut log, &placed(4));
        encode_into(&mut log, &placed(5));
        let err = scan(&log[..], LogCursor::start(), |_, _| {}).unwrap_err();
        let ScanError::Corrupt(bad) = err else {
            panic!("{err}")
        };
        assert_eq!(
            bad.reason,
            LineError::Seq {
                expected: 3,
                found: 4
            }
        );
        assert_eq!(bad.line, 3);
    }

    #[test]
    fn scan_across_chunk_boundaries() {
        let log = log_of(20_000); // several MiB: lines straddle read chunks
        assert!(log.len() > 2 * SCAN_CHUNK_BYTES);
        let mut count = 0;
        let report = scan(&log[..], LogCursor::start(), |_, _| count += 1).unwrap();
        assert_eq!(count, 20_000);
        assert_eq!(report.cursor.offset, log.len() as u64);
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        let user = "[A-Za-z0-9_.-]{1,64}";
        let side = prop_oneof![Just(Side::Buy), Just(Side::Sell)];
        let order = (
            1u64..u64::MAX,
            user,
            side,
            1u64..=1_000_000_000,
            1u64..=1_000_000,
        )
            .prop_map(|(id, user, side, price, qty)| Order {
                id,
                user,
                side,
                price,
                qty,
            });
        let fill = (
            1u64..u64::MAX,
            "[a-z]{1,8}",
            1u64..=1_000_000_000,
            1u64..=1_000_000,
        )
            .prop_map(|(maker_id, maker_user, price, qty)| Fill {
                maker_id,
                maker_user,
                price,
                qty,
            });
        let key = proptest::option::of("[ -~]{1,32}");
        let asset = prop_oneof![
            Just(crate::Symbol::from_static("USD")),
            Just(crate::Symbol::from_static("ACME"))
        ];
        let change = ("[a-z]{1,8}", asset.clone(), any::<i64>(), any::<i64>()).prop_map(
            |(user, asset, available, held)| crate::accounts::BalanceChange {
                user,
                asset,
                available,
                held,
            },
        );
        let balances = proptest::collection::vec(change, 0..4);
        prop_oneof![
            (
                order,
                proptest::collection::vec(fill, 0..5),
                0u64..1_000_000,
                balances.clone(),
                key
            )
                .prop_map(|(order, fills, resting_qty, balances, idempotency_key)| {
                    Event::OrderPlaced {
                        tif: Default::default(),
                        post_only: false,
                        stp: Default::default(),
                        market_order: false,
                        max_cost: None,
                        unfilled_qty: 0,
                        cancelled_makers: vec![],
                        market: crate::DEFAULT_MARKET,
                        order,
                        fills,
                        resting_qty,
                        balances,
                        idempotency_key,
                    }
                }),
            (
                1u64..u64::MAX,
                "[a-z]{1,8}",
                1u64..1_000_000,
                balances,
                proptest::option::of("[ -~]{1,32}")
            )
                .prop_map(
                    |(order_id, user, cancelled_qty, balances, idempotency_key)| {
                        Event::OrderCancelled {
                            market: crate::DEFAULT_MARKET,
                            order_id,
                            user,
                            cancelled_qty,
                            balances,
                            idempotency_key,
                        }
                    }
                ),
            (
                "[a-z]{1,8}",
                asset,
                1u64..=crate::accounts::AMOUNT_MAX,
                any::<bool>(),
                proptest::option::of("[ -~]{1,32}")
            )
                .prop_map(|(user, asset, amount, deposit, idempotency_key)| {
                    if deposit {
                        Event::Deposited {
                            user,
                            asset,
                            amount,
                            idempotency_key,
                        }
                    } else {
                        Event::Withdrawn {
                            user,
                            asset,
                            amount,
                            idempotency_key,
                        }
                    }
                }),
            (
                1u64..u64::MAX,
                "[a-z]{1,8}",
                1u64..=1_000_000_000,
                1u64..=1_000_000,
                proptest::option::of(1u64..u64::MAX),
                proptest::collection::vec((1u64..u64::MAX, 1u64..=1_000_000), 0..3),
            )
                .prop_map(
                    |(order_id, user, new_price, new_qty, new_order_id, orders)| {
                        if orders.is_empty() {
                            Event::OrderAmended {
                                market: crate::DEFAULT_MARKET,
                                order_id,
                                user,
                                side: Side::Sell,
                                price: 7,
                                qty: 3,
                                new_price,
                                new_qty,
                                new_order_id,
                                fills: vec![],
                                resting_qty: new_qty,
                                balances: vec![],
                                idempotency_key: None,
                            }
                        } else {
                            Event::OrdersCancelled {
                                market: new_order_id.map(|_| crate::DEFAULT_MARKET),
                                user,
                                orders: (orders.into_iter())
                                    .map(|(order_id, qty)| crate::event::MarketOrder {
                                        market: crate::DEFAULT_MARKET,
                                        order_id,
                                        qty,
                                    })
                                    .collect(),
                                balances: vec![],
                                idempotency_key: None,
                            }
                        }
                    }
                ),
        ]
    }

    fn arb_envelope() -> impl Strategy<Value = Envelope> {
        (1u64..u64::MAX, any::<u64>(), arb_event()).prop_map(|(seq, ts_us, event)| Envelope {
            seq,
            ts_us,
            v: SCHEMA_VERSION,
            event,
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(env in arb_envelope()) {
            let line = encode(&env);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(decode_line(&line[..line.len() - 1]), Ok(env));
        }

        #[test]
        fn every_single_byte_change_is_detected(env in arb_envelope(), pos in any::<prop::sample::Index>(), new in any::<u8>()) {
            let mut line = encode(&env);
            line.pop();
            let i = pos.index(line.len());
            prop_assume!(line[i] != new);
            line[i] = new;
            prop_assert!(decode_line(&line).is_err(), "byte {} changed to {:#x} went unnoticed", i, new);
        }

        #[test]
        fn the_head_is_what_decoding_gives(env in arb_envelope()) {
            let line = encode(&env);
            let head = peek_head(&line[..line.len() - 1]).unwrap();
            // A transfer is of no market: its line is decoded whole.
            let want = env.event.market().map(|market| LineHead { seq: env.seq, ts_us: env.ts_us, kind: env.event.kind(), market });
            prop_assert_eq!(head, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = peek_head(&bytes);
            let _ = decode_line(&bytes);
            let _ = scan(&bytes[..], LogCursor::start(), |_, _| {});
        }
    }
}
