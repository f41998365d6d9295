//! A stream read as a log of lines ([`JetStreamReader`]): each message one line, the
//! stream sequence its seq, byte offsets computed as in the file the same lines
//! would make (see the module docs of [`super`]).

use super::feed::{Feed, FeedItem, Wake};
use super::{JetStream, OFFSET_HEADER, READ_TIMEOUT};
use crate::lines::{LineWindow, Position};
use std::io;
use std::sync::mpsc::{RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A stream read as a log: lines fetched in order from the seq it was
/// located at, held in a [`LineWindow`] and addressed by computed offsets (see the
/// module docs). Reading past what it holds waits for the next message, or says the
/// log ends where the stream does. Only forward reading from a located line is
/// served; a read before the window is an error.
pub struct JetStreamReader {
    /// The client and where the stream is.
    js: Arc<JetStream>,
    /// The lines taken in and not yet dropped.
    window: LineWindow,
    /// The consumer delivering the lines after the window; `None` when stopped.
    feed: Option<Feed>,
    /// Who is woken when a message arrives (the read side's tailer).
    wake: Wake,
    /// The stream's last seq as last seen (a delivered message's seq + pending, or
    /// the stream's info).
    known_last: u64,
    /// Whether the stream was seen to exist.
    seen: bool,
    /// When the server stored the newest line taken in (µs since the epoch).
    newest_ts_us: u64,
    /// The last trouble the feed reported, for error messages.
    trouble: Option<String>,
    /// The subjects it is delivered (`None`: every message): the lines of others
    /// are left out of the window.
    filter: Option<Vec<String>>,
}

impl std::fmt::Debug for JetStreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamReader")
            .field("url", &self.js.url)
            .field("window", &(self.window.start(), self.window.end()))
            .finish()
    }
}

impl JetStreamReader {
    /// A reader of the stream, located at its start (seq 1, offset 0).
    pub fn new(js: Arc<JetStream>) -> Self {
        JetStreamReader {
            js,
            window: LineWindow::new(Position {
                offset: 0,
                lines: 0,
                next_seq: 1,
            }),
            feed: None,
            wake: Arc::new(Mutex::new(None)),
            known_last: 0,
            seen: false,
            newest_ts_us: 0,
            trouble: None,
            filter: None,
        }
    }

    /// A reader of only the messages on `subjects`, located at the stream's start:
    /// the seqs between two delivered messages are left out of its window (see the
    /// module docs of [`super`]).
    pub fn filtered(js: Arc<JetStream>, subjects: Vec<String>) -> Self {
        JetStreamReader {
            filter: Some(subjects),
            ..JetStreamReader::new(js)
        }
    }

    pub fn jetstream(&self) -> &Arc<JetStream> {
        &self.js
    }

    /// The lines held: from the located line (or the last one dropped before) to
    /// the last line taken in.
    pub fn window(&self) -> &LineWindow {
        &self.window
    }

    /// Drops held lines that end at or before `offset` (read and done with).
    pub fn drop_before(&mut self, offset: u64) {
        self.window.drop_before(offset);
    }

    /// The stream's last seq as last seen.
    pub fn known_last(&self) -> u64 {
        self.known_last
    }

    /// Whether the stream was seen to exist (a message arrived, or its info).
    pub fn seen(&self) -> bool {
        self.seen
    }

    /// When the server stored the newest line taken in, µs since the epoch (0: none).
    pub fn newest_ts_us(&self) -> u64 {
        self.newest_ts_us
    }

    /// From now on, every message that arrives sends a token to `wake`.
    pub fn set_wake(&mut self, wake: SyncSender<()>) {
        *self.wake.lock().expect("wake lock") = Some(wake);
    }

    /// Stops fetching (the held lines stay); the next read past them starts again.
    pub fn close(&mut self) {
        self.feed = None;
    }

    /// Takes in what the feed has delivered, without waiting, while fewer than
    /// `held_max` bytes are held (starting the feed if it is not running). Returns
    /// whether more is waiting.
    pub fn poll(&mut self, held_max: usize) -> io::Result<bool> {
        if self.feed.is_none() {
            self.feed = Some(Feed::start(
                &self.js,
                self.window.end().next_seq,
                self.filter.clone(),
                self.wake.clone(),
            ));
        }
        while self.window.held_bytes() < held_max {
            let item = match self.feed.as_ref().map(|f| f.lines.try_recv()) {
                Some(Ok(item)) => item,
                Some(Err(std::sync::mpsc::TryRecvError::Empty)) | None => return Ok(false),
                Some(Err(std::sync::mpsc::TryRecvError::Disconnected)) => {
                    self.feed = None;
                    return Err(io::Error::other("the stream feed stopped"));
                }
            };
            self.take(item)?;
        }
        Ok(true)
    }

    /// Takes one item from the feed into the window, checking that it is the next
    /// line: stream seq and place must agree (a filtered reader leaves out the seqs
    /// between), its offset header (if any) must say where it lies, and a line holds
    /// no newline.
    fn take(&mut self, item: FeedItem) -> io::Result<()> {
        let bad = |message: String| {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {message}", self.js.url),
            ))
        };
        let (seq, payload, ts_us, pending, permits, offset) = match item {
            FeedItem::Line {
                seq,
                payload,
                ts_us,
                pending,
                permits,
                offset,
            } => (seq, payload, ts_us, pending, permits, offset),
            FeedItem::Through { seq, next_offset } => {
                let end = self.window.end();
                if seq >= end.next_seq {
                    let left_out = seq + 1 - end.next_seq;
                    if next_offset < end.offset + left_out {
                        return bad(format!(
                            "line {} is said to start at byte {next_offset}, too soon after \
                             byte {} where line {} starts",
                            seq + 1,
                            end.offset,
                            end.next_seq
                        ));
                    }
                    self.window.leave_out(Position {
                        offset: next_offset,
                        lines: end.lines + left_out,
                        next_seq: seq + 1,
                    });
                }
                self.seen = true;
                self.known_last = self.known_last.max(seq);
                return Ok(());
            }
            FeedItem::Trouble(trouble) => {
                self.trouble = Some(trouble);
                return Ok(());
            }
        };
        if let Some(feed) = &self.feed {
            feed.room.add_permits(permits as usize);
        }
        self.seen = true;
        self.trouble = None;
        let end = self.window.end();
        if seq > end.next_seq && self.filter.is_some() {
            // The lines between are other subjects': left out, up to where this one
            // starts.
            let Some(offset) = offset else {
                return bad(format!(
                    "stream message {seq} has no {OFFSET_HEADER} header (an older build's): a \
                     reader of only some markets cannot tell where it starts after the lines \
                     left out before it (from seq {}); read the stream without --markets",
                    end.next_seq
                ));
            };
            let left_out = seq - end.next_seq;
            if offset < end.offset + left_out {
                return bad(format!(
                    "stream message {seq} says it starts at byte {offset}, too soon after byte \
                     {} where seq {} starts",
                    end.offset, end.next_seq
                ));
            }
            self.window.leave_out(Position {
                offset,
                lines: end.lines + left_out,
                next_seq: seq,
            });
        }
        let expected = self.window.end();
        if seq != expected.next_seq {
            return bad(format!(
                "stream message {seq} came where seq {} was expected \
                 (messages were removed from the stream?)",
                expected.next_seq
            ));
        }
        if let Some(offset) = offset
            && offset != expected.offset
        {
            return bad(format!(
                "stream message {seq} says it starts at byte {offset}, but the lines before it \
                 end at byte {} (a snapshot of another log, or the stream was replaced?)",
                expected.offset
            ));
        }
        if memchr::memchr(b'\n', &payload).is_some() {
            return bad(format!(
                "stream message {seq} holds a newline: it is not a log line"
            ));
        }
        self.window.push(&payload);
        // A filtered consumer's pending counts only its own subjects' messages.
        let last = if self.filter.is_some() {
            seq
        } else {
            seq + pending
        };
        self.known_last = self.known_last.max(last);
        self.newest_ts_us = ts_us;
        Ok(())
    }

    /// Asks the stream how far it goes; `false` when it does not exist.
    pub fn refresh(&mut self) -> io::Result<bool> {
        match self.js.bounds()? {
            Some(bounds) => {
                self.seen = true;
                self.known_last = self.known_last.max(bounds.last_seq);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Waits (at most [`READ_TIMEOUT`]) for the next line; `Ok(false)` when the
    /// stream ends before it.
    fn next_line(&mut self) -> io::Result<bool> {
        let want = self.window.end().next_seq;
        if want > self.known_last {
            if !self.refresh()? {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: the stream does not exist", self.js.url),
                ));
            }
            if want > self.known_last {
                return Ok(false);
            }
        }
        if self.feed.is_none() {
            self.feed = Some(Feed::start(
                &self.js,
                want,
                self.filter.clone(),
                self.wake.clone(),
            ));
        }
        let deadline = Instant::now() + READ_TIMEOUT;
        while self.window.end().next_seq == want {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self
                .feed
                .as_ref()
                .expect("started above")
                .lines
                .recv_timeout(left);
            match received {
                Ok(item) => self.take(item)?,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: message {want} did not arrive within {READ_TIMEOUT:?} (the stream holds up to {}){}",
                            self.js.url,
                            self.known_last,
                            self.trouble
                                .as_ref()
                                .map_or(String::new(), |t| format!("; last trouble: {t}"))
                        ),
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.feed = None;
                    return Err(io::Error::other("the stream feed stopped"));
                }
            }
        }
        Ok(true)
    }
}

impl JetStreamReader {
    /// Reads bytes from `offset` into `buf`, waiting for the lines it needs; 0 at
    /// the end of the stream. Reads go forward from the located line.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if offset < self.window.start().offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: byte {offset} is before the located line at {} (seq {})",
                    self.js.url,
                    self.window.start().offset,
                    self.window.start().next_seq
                ),
            ));
        }
        // Reads go forward: the lines before this one are done with (holding them
        // made a read through the stream hold all of it).
        self.window.drop_before(offset);
        loop {
            let n = self.window.read_at(offset, buf);
            if n > 0 {
                return Ok(n);
            }
            if !self.next_line()? {
                return Ok(0);
            }
        }
    }

    /// Says that the line with seq `at.next_seq` starts at byte `at.offset`, before
    /// reading from there.
    pub fn locate(&mut self, at: Position) {
        // Reading on from where it stands keeps the feed; anywhere else starts anew.
        let start = self.window.start();
        if at.offset >= start.offset && at.offset <= self.window.end().offset {
            self.window.drop_before(at.offset);
            let start = self.window.start();
            if start.offset == at.offset && start.next_seq == at.next_seq {
                return;
            }
        }
        self.window = LineWindow::new(at);
        self.feed = None;
    }

    /// Whether the stream continues a state taken after line `seq`: it holds `seq`
    /// lines or more and has not lost the ones after it. Byte offsets cannot be
    /// checked without reading the stream from the start: a stream deleted and
    /// created again under the same name, as long as the old one or longer, is not
    /// told apart.
    pub fn check_continues(&mut self, seq: u64) -> Result<(), String> {
        let bounds = match self.js.bounds() {
            Ok(Some(bounds)) => bounds,
            Ok(None) if seq == 0 => return Ok(()),
            Ok(None) => return Err(format!("{}: the stream does not exist", self.js.url)),
            Err(e) => return Err(format!("{}: {e}", self.js.url)),
        };
        if bounds.last_seq < seq {
            return Err(format!(
                "the stream ends at seq {}, before seq {seq}",
                bounds.last_seq
            ));
        }
        if bounds.first_seq > seq + 1 {
            return Err(format!(
                "the stream starts at seq {}: lines after seq {seq} were removed",
                bounds.first_seq
            ));
        }
        Ok(())
    }
}
