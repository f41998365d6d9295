//! The read side on JetStream (`--log nats://HOST:PORT/STREAM`): [`JetStreamSource`] is
//! the [`LogSource`] the tailer follows, so verifying, folding, publishing, lag and
//! snapshots are the same code as for the file. Any number of query-svc replicas, on
//! any hosts, each follow the stream this way.
//!
//! An ordered consumer (plumbing's `jetstream::feed`) delivers the stream from the tailer's
//! start seq into a bounded window of lines with computed byte offsets. Each step's
//! watermark takes in what arrived (at most [`WINDOW_BYTES_MAX`] held), and the
//! tailer reads and applies up to its end; what the tailer has read is dropped at
//! the step after. The stream only delivers messages stored on a quorum of its
//! replicas, so everything delivered is durable and the watermark is its end.
//!
//! The watermark's seq is the stream's last seq as last seen (a delivered message's
//! seq plus the messages pending after it), so `behind` and `durable_seq` say how far
//! the stream is ahead. Its time, from which lag is measured, is the JetStream
//! timestamp of the newest message taken in: when the server stored it (by the
//! server's clock). The tailer measures from the later of it and the envelope's
//! `ts_us`. Each arriving message wakes the tailer.
//!
//! A replica holding only some markets (`--markets`) consumes only the stream's base
//! subject and its markets' subjects ([`subjects_held`]). The seqs between two
//! delivered messages are other markets' lines: left out of the window up to where
//! the next delivered one starts (its `Foldbook-Offset` header), and told to the
//! tailer as such ([`LogSource::left_out`]). When nothing is delivered for a while
//! the feed asks the stream whether the lines after the last delivered one are all
//! other markets' (plumbing's `jetstream::feed`), so writes to other markets alone
//! still move the applied seq on (for `min_seq` and `/health`).

use crate::history::OpenLog;
use crate::source::LogSource;
use plumbing::jetstream::{JetStream, JetStreamReader};
use plumbing::lines::Position;
use shared_events::source::LogRead;
use shared_events::state::MarketSpec;
use shared_events::{LogCursor, Watermark};
use std::io;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

/// Most bytes of lines held ahead for the tailer (it reads up to
/// `READ_BYTES_MAX` per step, or all of it in a catch-up).
pub const WINDOW_BYTES_MAX: usize = 8 << 20;

/// A JetStream stream as the tailer's log.
pub struct JetStreamSource {
    log: JetStreamReader,
    /// The lowest offset read since the last watermark. The tailer reads from its
    /// cursor on and its cursor never moves back, so at the next watermark the lines
    /// before it are done with.
    low_read: Option<u64>,
    /// The tailer's wake-up, also for when more is waiting than one step took in.
    wake: Option<SyncSender<()>>,
}

/// The subjects a replica holding `held` of `markets` consumes: the base subject
/// and each held market's; `None` (every message) when it holds every market.
pub fn subjects_held(js: &JetStream, markets: &[MarketSpec], held: &[bool]) -> Option<Vec<String>> {
    if held.iter().all(|h| *h) {
        return None;
    }
    let url = js.url();
    let held = (markets.iter().zip(held)).filter(|(_, held)| **held);
    Some(
        std::iter::once(url.subject.clone())
            .chain(held.map(|(m, _)| url.subject_of(m.symbol.as_str())))
            .collect(),
    )
}

impl JetStreamSource {
    /// Follows the stream from `at`: where the tailer's model leaves off; only the
    /// messages on `subjects`, when given.
    pub fn new(js: Arc<JetStream>, at: LogCursor, subjects: Option<Vec<String>>) -> Self {
        let mut log = match subjects {
            Some(subjects) => JetStreamReader::filtered(js, subjects),
            None => JetStreamReader::new(js),
        };
        log.locate(Position {
            offset: at.offset,
            lines: at.lines,
            next_seq: at.next_seq,
        });
        JetStreamSource {
            log,
            low_read: None,
            wake: None,
        }
    }
}

impl LogRead for JetStreamSource {
    /// The end of the lines taken in: the log as far as the tailer may read it.
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(self.log.seen().then(|| self.log.window().end().offset))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let window = self.log.window();
        if offset < window.start().offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "byte {offset} was already dropped (held from {})",
                    window.start().offset
                ),
            ));
        }
        self.low_read = Some(self.low_read.map_or(offset, |low| low.min(offset)));
        Ok(window.read_at(offset, buf))
    }
}

impl LogSource for JetStreamSource {
    fn watermark(&mut self) -> io::Result<Option<Watermark>> {
        if let Some(low) = self.low_read.take() {
            self.log.drop_before(low);
        }
        let more = self.log.poll(WINDOW_BYTES_MAX)?;
        if more && let Some(wake) = &self.wake {
            // The tailer takes what is held, then comes back for the rest at once.
            let _ = wake.try_send(());
        }
        if !self.log.seen() && !self.log.refresh()? {
            // The stream does not exist (yet): the writer creates it.
            return Ok(None);
        }
        let end = self.log.window().end();
        Ok(Some(Watermark {
            seq: (end.next_seq - 1).max(self.log.known_last()),
            offset: end.offset,
            ts_us: self.log.newest_ts_us(),
        }))
    }

    fn watch(&mut self, wake: SyncSender<()>) -> Option<Box<dyn Send>> {
        self.log.set_wake(wake.clone());
        self.wake = Some(wake);
        Some(Box::new(()))
    }

    fn name(&self) -> String {
        self.log.jetstream().url().to_string()
    }

    fn left_out(&mut self, offset: u64) -> Option<(LogCursor, LogCursor)> {
        // Moving past a run is reading it: what ends before is done with.
        self.low_read = Some(self.low_read.map_or(offset, |low| low.min(offset)));
        let cursor = |p: Position| LogCursor {
            offset: p.offset,
            lines: p.lines,
            next_seq: p.next_seq,
        };
        let run = self.log.window().left_out_after(offset)?;
        Some((cursor(run.from), cursor(run.to)))
    }
}

/// A stream read as a log ([`LogRead`]) from where it is located: for readers of the
/// past and for loading a snapshot. Plumbing's [`JetStreamReader`] reads the lines; this
/// says what the log's interface needs of it.
#[derive(Debug)]
pub struct JetStreamLog(JetStreamReader);

impl JetStreamLog {
    /// A reader of the stream, located at its start.
    pub fn new(js: Arc<JetStream>) -> Self {
        JetStreamLog(JetStreamReader::new(js))
    }
}

impl LogRead for JetStreamLog {
    /// Not known without reading the whole stream.
    fn length(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(offset, buf)
    }

    fn locate(&mut self, at: LogCursor) {
        self.0.locate(Position {
            offset: at.offset,
            lines: at.lines,
            next_seq: at.next_seq,
        })
    }

    /// By seq only: see plumbing's `JetStreamReader::check_continues`.
    fn check_continues(&mut self, seq: u64, _offset: u64) -> Result<(), String> {
        self.0.check_continues(seq)
    }
}

/// Opens a [`JetStreamLog`] on the same connection for each reader of the past
/// (time travel, the history part of `/events`): it reads by seq from where it is
/// located.
#[derive(Debug, Clone)]
pub struct JetStreamOpener(pub Arc<JetStream>);

impl OpenLog for JetStreamOpener {
    fn open(&self) -> Box<dyn LogRead + Send> {
        Box::new(JetStreamLog::new(self.0.clone()))
    }
}
