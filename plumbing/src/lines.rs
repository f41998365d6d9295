//! Consecutive lines held in memory and addressed by the byte offsets they would
//! have in a file ([`LineWindow`]): how a log kept as messages (one line each, as in
//! a JetStream stream) is read as bytes.

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

/// Consecutive whole lines of a log held in memory, each with its newline, addressed
/// by the byte offsets they have in the log: what a log of messages has read. Lines
/// are added at the end and dropped, whole, from the front.
#[derive(Debug, Clone)]
pub struct LineWindow {
    /// The first held line's offset and seq.
    start: Position,
    /// The held lines' bytes, `bytes[front..]`; the front part was dropped.
    bytes: Vec<u8>,
    front: usize,
    /// Where each held line ends (an offset in the log), oldest first.
    ends: VecDeque<u64>,
}

impl LineWindow {
    /// An empty window whose first line will be the one at `at`.
    pub fn new(at: Position) -> Self {
        LineWindow {
            start: at,
            bytes: Vec::new(),
            front: 0,
            ends: VecDeque::new(),
        }
    }

    /// Where the first held line starts (the end, when none is held).
    pub fn start(&self) -> Position {
        self.start
    }

    /// Just past the last held line: where the next line goes.
    pub fn end(&self) -> Position {
        Position {
            offset: self.start.offset + self.held_bytes() as u64,
            lines: self.start.lines + self.ends.len() as u64,
            next_seq: self.start.next_seq + self.ends.len() as u64,
        }
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.bytes.len() - self.front
    }

    /// Appends the next line (without its newline; it must not contain one).
    pub fn push(&mut self, line: &[u8]) {
        debug_assert!(memchr::memchr(b'\n', line).is_none());
        self.bytes.extend_from_slice(line);
        self.bytes.push(b'\n');
        let end = self.start.offset + self.held_bytes() as u64;
        self.ends.push_back(end);
    }

    /// Copies held bytes from `offset` into `buf`; 0 when `offset` is not held.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        let end = self.end().offset;
        if offset < self.start.offset || offset >= end {
            return 0;
        }
        let from = self.front + (offset - self.start.offset) as usize;
        let n = buf.len().min(self.bytes.len() - from);
        buf[..n].copy_from_slice(&self.bytes[from..from + n]);
        n
    }

    /// Drops the held lines that end at or before `offset`.
    pub fn drop_before(&mut self, offset: u64) {
        while let Some(&end) = self.ends.front() {
            if end > offset {
                break;
            }
            self.ends.pop_front();
            self.front += (end - self.start.offset) as usize;
            self.start = Position {
                offset: end,
                lines: self.start.lines + 1,
                next_seq: self.start.next_seq + 1,
            };
        }
        // Move the rest to the front once the dropped part is the larger.
        if self.front > self.bytes.len() / 2 {
            self.bytes.drain(..self.front);
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
}
