//! Lines held in memory and addressed by the byte offsets they would have in a file
//! ([`LineWindow`]): how a log kept as messages (one line each, as in a JetStream
//! stream) is read as bytes. A reader that is delivered only some of the messages (a
//! filtered consumer) also knows where the others lie, but not their bytes: the
//! window holds those as runs of lines left out.

use std::collections::VecDeque;

/// A place in a log of lines: a byte offset at the start of a line, with the lines
/// before it and the seq of the line that starts there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Byte offset of the line's start.
    pub offset: u64,
    /// Lines before it.
    pub lines: u64,
    /// The line's seq.
    pub next_seq: u64,
}

/// A run of consecutive lines whose place is known and whose bytes are not: from
/// `from` (its first line) to `to` (just past its last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    pub from: Position,
    pub to: Position,
}

/// Consecutive lines of a log, each with its newline, addressed by the byte offsets
/// they have in the log: what a log of messages has read. Each is held (its bytes)
/// or left out (only its place is known, [`LeftOut`]). Lines are added at the end
/// and dropped, whole, from the front.
#[derive(Debug, Clone)]
pub struct LineWindow {
    /// Where the first line (held or left out) starts.
    start: Position,
    /// Just past the last line taken in.
    end: Position,
    /// The held lines' bytes, `bytes[front..]`; the front part was dropped.
    bytes: Vec<u8>,
    front: usize,
    /// Each held line: where it starts, oldest first.
    held: VecDeque<Position>,
    /// Where each held line's bytes start in `bytes`, counted from the first byte
    /// ever pushed (so dropping from the front changes none of them).
    held_at: VecDeque<u64>,
    /// Bytes ever pushed, and ever removed from the front of `bytes`.
    pushed: u64,
    removed: u64,
    /// The runs left out, oldest first, as they were taken in.
    left_out: VecDeque<LeftOut>,
}

impl LineWindow {
    /// An empty window whose first line will be the one at `at`.
    pub fn new(at: Position) -> Self {
        LineWindow {
            start: at,
            end: at,
            bytes: Vec::new(),
            front: 0,
            held: VecDeque::new(),
            held_at: VecDeque::new(),
            pushed: 0,
            removed: 0,
            left_out: VecDeque::new(),
        }
    }

    /// Where the first line starts (the end, when none is there).
    pub fn start(&self) -> Position {
        self.start
    }

    /// Just past the last line: where the next line goes.
    pub fn end(&self) -> Position {
        self.end
    }

    /// Bytes held (the lines left out take none).
    pub fn held_bytes(&self) -> usize {
        self.bytes.len() - self.front
    }

    /// Appends the next line (without its newline; it must not contain one).
    pub fn push(&mut self, line: &[u8]) {
        debug_assert!(memchr::memchr(b'\n', line).is_none());
        self.held.push_back(self.end);
        self.held_at.push_back(self.pushed);
        self.bytes.extend_from_slice(line);
        self.bytes.push(b'\n');
        let len = line.len() as u64 + 1;
        self.pushed += len;
        self.end = Position {
            offset: self.end.offset + len,
            lines: self.end.lines + 1,
            next_seq: self.end.next_seq + 1,
        };
    }

    /// Leaves out the lines from the end up to `to` (just past the last of them):
    /// their place is known, their bytes are not. Nothing when `to` is the end.
    pub fn leave_out(&mut self, to: Position) {
        let from = self.end;
        assert!(
            to.offset >= from.offset
                && to.next_seq >= from.next_seq
                && to.lines - from.lines == to.next_seq - from.next_seq
                && (to.next_seq > from.next_seq) == (to.offset > from.offset),
            "lines left out go forward from the end: {from:?} to {to:?}"
        );
        if to == from {
            return;
        }
        // Not merged with a run just before: a reader may have moved past that one
        // already, and goes on from its end.
        self.left_out.push_back(LeftOut { from, to });
        self.end = to;
    }

    /// The first run of lines left out that ends after `offset`, if any.
    pub fn left_out_after(&self, offset: u64) -> Option<LeftOut> {
        let i = self.left_out.partition_point(|r| r.to.offset <= offset);
        self.left_out.get(i).copied()
    }

    /// Copies held bytes from `offset` into `buf`, up to the next run left out; 0
    /// when `offset` is not held.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        if offset < self.start.offset || offset >= self.end.offset {
            return 0;
        }
        // The held line `offset` is in, if it is in one.
        let Some(i) = self
            .held
            .partition_point(|p| p.offset <= offset)
            .checked_sub(1)
        else {
            return 0;
        };
        let line = self.held[i];
        let line_end = match self.held_at.get(i + 1) {
            Some(next) => line.offset + (next - self.held_at[i]),
            None => line.offset + (self.pushed - self.held_at[i]),
        };
        // Past the line's end is a run left out. The held lines from here to the
        // next run are contiguous, in the log and in `bytes`.
        if offset >= line_end {
            return 0;
        }
        let run_end = self
            .left_out_after(offset)
            .map_or(self.end.offset, |r| r.from.offset);
        let from = (self.held_at[i] - self.removed) as usize + (offset - line.offset) as usize;
        let n = buf.len().min((run_end - offset) as usize);
        buf[..n].copy_from_slice(&self.bytes[from..from + n]);
        n
    }

    /// Drops the lines (held or left out) that end at or before `offset`.
    pub fn drop_before(&mut self, offset: u64) {
        loop {
            let next_held = self.held.front().copied();
            let next_run = self.left_out.front().copied();
            match (next_held, next_run) {
                // The first line is held: drop it if it ends in time.
                (Some(line), run) if run.is_none_or(|r| line.offset < r.from.offset) => {
                    let len = match self.held_at.get(1) {
                        Some(next) => next - self.held_at[0],
                        None => self.pushed - self.held_at[0],
                    };
                    if line.offset + len > offset {
                        break;
                    }
                    self.held.pop_front();
                    self.held_at.pop_front();
                    self.front += len as usize;
                    self.start = Position {
                        offset: line.offset + len,
                        lines: line.lines + 1,
                        next_seq: line.next_seq + 1,
                    };
                }
                // The first lines are left out: drop the run if it ends in time.
                (_, Some(run)) => {
                    if run.to.offset > offset {
                        break;
                    }
                    self.left_out.pop_front();
                    self.start = run.to;
                }
                (_, None) => break,
            }
        }
        // Move the rest to the front once the dropped part is the larger.
        if self.front > self.bytes.len() / 2 {
            self.bytes.drain(..self.front);
            self.removed += self.front as u64;
            self.front = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_window_reads_by_offset_and_drops_whole_lines() {
        let at = Position {
            offset: 100,
            lines: 9,
            next_seq: 10,
        };
        let mut w = LineWindow::new(at);
        assert_eq!((w.start(), w.end()), (at, at));
        w.push(b"abc");
        w.push(b"de");
        w.push(b"f");
        assert_eq!(w.end().offset, 100 + 4 + 3 + 2);
        assert_eq!(w.end().next_seq, 13);
        let mut buf = [0u8; 16];
        let n = w.read_at(100, &mut buf);
        assert_eq!(&buf[..n], b"abc\nde\nf\n");
        let n = w.read_at(105, &mut buf[..2]);
        assert_eq!(&buf[..n], b"e\n");
        assert_eq!(w.read_at(99, &mut buf), 0, "before the window");
        assert_eq!(w.read_at(109, &mut buf), 0, "at its end");
        // Offset 105 is inside the second line: only the first goes.
        w.drop_before(105);
        assert_eq!(w.start().offset, 104);
        assert_eq!(w.start().next_seq, 11);
        let n = w.read_at(104, &mut buf);
        assert_eq!(&buf[..n], b"de\nf\n");
        w.drop_before(1000);
        assert_eq!(w.held_bytes(), 0);
        assert_eq!(w.start(), w.end());
        assert_eq!(w.start().next_seq, 13);
        w.push(b"g");
        let n = w.read_at(109, &mut buf);
        assert_eq!(&buf[..n], b"g\n");
    }

    #[test]
    fn lines_left_out_are_known_by_place_and_never_read() {
        let at = |offset, next_seq| Position {
            offset,
            lines: next_seq - 1,
            next_seq,
        };
        let mut w = LineWindow::new(at(0, 1));
        w.push(b"ab"); // seq 1, [0, 3)
        w.leave_out(at(10, 4)); // seqs 2..=3, [3, 10)
        w.push(b"c"); // seq 4, [10, 12)
        w.push(b"d"); // seq 5, [12, 14)
        w.leave_out(at(20, 7)); // seq 6, [14, 20)
        w.leave_out(at(25, 8)); // seq 7, [20, 25): a run of its own
        assert_eq!(w.end(), at(25, 8));
        assert_eq!(w.held_bytes(), 7);
        let mut buf = [0u8; 32];
        let n = w.read_at(0, &mut buf);
        assert_eq!(&buf[..n], b"ab\n", "a read stops where lines are left out");
        assert_eq!(w.read_at(3, &mut buf), 0, "a line left out is not read");
        assert_eq!(w.read_at(9, &mut buf), 0);
        let n = w.read_at(10, &mut buf);
        assert_eq!(&buf[..n], b"c\nd\n");
        assert_eq!(w.read_at(14, &mut buf), 0);
        let first = w.left_out_after(0).unwrap();
        assert_eq!((first.from, first.to), (at(3, 2), at(10, 4)));
        assert_eq!(w.left_out_after(3), Some(first));
        let second = w.left_out_after(10).unwrap();
        assert_eq!((second.from, second.to), (at(14, 6), at(20, 7)));
        let third = w.left_out_after(20).unwrap();
        assert_eq!((third.from, third.to), (at(20, 7), at(25, 8)));
        assert_eq!(w.left_out_after(25), None);
        // Dropping goes over held lines and runs alike.
        w.drop_before(5);
        assert_eq!(w.start(), at(3, 2), "the run ending at 10 stays");
        w.drop_before(10);
        assert_eq!(w.start(), at(10, 4));
        let n = w.read_at(12, &mut buf);
        assert_eq!(&buf[..n], b"d\n");
        w.drop_before(25);
        assert_eq!((w.start(), w.held_bytes()), (at(25, 8), 0));
        w.push(b"e");
        let n = w.read_at(25, &mut buf);
        assert_eq!(&buf[..n], b"e\n");
        assert_eq!(w.left_out_after(0), None);
    }
}
