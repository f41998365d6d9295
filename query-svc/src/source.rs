//! Where the read side reads the log from: [`LogSource`] is the durable watermark,
//! the log's bytes from an offset ([`LogRead`]), and a wake-up source. The tailer
//! needs nothing else, so the same tailer code follows the file on disk
//! ([`FileSource`]) and the simulator's seeded disk (`gateway::sim`).
//!
//! A source may leave lines out ([`LogSource::left_out`]): a JetStream consumer of
//! only the held markets' subjects is not delivered the other markets' lines, only
//! told where they lie. The tailer moves past them by seq and offset, as it moves
//! past a line of another market it was delivered, without reading them.

use shared_events::source::{FileLog, LogRead};
use shared_events::watermark::WatermarkReader;
use shared_events::{LogCursor, Watermark, watermark};
use std::io;
use std::path::Path;
use std::sync::mpsc::SyncSender;

/// The log as the read side sees it.
pub trait LogSource: LogRead + Send + 'static {
    /// How far the writer says the log is durable; `None` while it has said nothing
    /// (or is caught mid-rewrite). Nothing past it may be applied.
    fn watermark(&mut self) -> io::Result<Option<Watermark>>;

    /// Starts sending a token to `wake` whenever the log or the watermark may have
    /// changed; the returned guard keeps the notifications coming. `None`: there are
    /// none, the tailer only polls. Notifications may be late, coalesced or lost.
    fn watch(&mut self, wake: SyncSender<()>) -> Option<Box<dyn Send>>;

    /// Whether the notifications [`LogSource::watch`] set up may have gone stale (a
    /// file they watched was replaced, or one they waited for appeared): the tailer
    /// then calls `watch` again. Asked after every step.
    fn rewatch(&mut self) -> bool {
        false
    }

    /// Names the log in messages.
    fn name(&self) -> String;

    /// The first run of lines the source left out that ends after `offset`: from
    /// where its first line starts to just past its last. Only lines of markets the
    /// read side does not hold are left out, and only by a source that knows which
    /// it holds (a filtered JetStream consumer); the others leave nothing out.
    fn left_out(&mut self, offset: u64) -> Option<(LogCursor, LogCursor)> {
        let _ = offset;
        None
    }
}

/// The log file and its watermark side file (`<log>.durable`), with change
/// notifications on their directory.
#[derive(Debug)]
pub struct FileSource {
    log: FileLog,
    /// The writer's durable watermark.
    watermark: WatermarkReader,
}

impl FileSource {
    pub fn new(log: &Path) -> Self {
        FileSource {
            log: FileLog::new(log),
            watermark: WatermarkReader::new(watermark::path_for(log)),
        }
    }
}

impl LogRead for FileSource {
    fn length(&mut self) -> io::Result<Option<u64>> {
        self.log.length()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.log.read_at(offset, buf)
    }
}

impl LogSource for FileSource {
    fn watermark(&mut self) -> io::Result<Option<Watermark>> {
        self.watermark.read()
    }

    fn watch(&mut self, wake: SyncSender<()>) -> Option<Box<dyn Send>> {
        crate::file_watch::watch(self.log.path(), wake)
            .map(|watcher| Box::new(watcher) as Box<dyn Send>)
    }

    /// The watermark file was opened: the first one (the watch may have been on the
    /// directory, waiting for it) or a replacement (the watch is on the old file).
    fn rewatch(&mut self) -> bool {
        self.watermark.take_opened()
    }

    fn name(&self) -> String {
        self.log.path().display().to_string()
    }
}
