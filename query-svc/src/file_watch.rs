//! Change notifications for a log file (the `notify` crate, inotify on Linux): the
//! tailer's wake-ups. Only changes to the log's durable watermark wake it: nothing
//! past the watermark may be applied, and the writer rewrites the watermark after
//! every sync, so a change to the log itself (every group commit's write) cannot
//! let the tailer apply anything yet, and waking it for one cost a wake-up per
//! group commit for nothing. Its own reads, and other files beside the log, do not
//! wake it either; the tailer's poll covers whatever notifications miss.

use notify::Watcher;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// Watches the watermark file of the log at `path` (or, while it does not exist
/// yet, the log's directory, for its creation) and turns every notification that
/// concerns the watermark into a wake-up token. Watching the file itself, not the
/// directory, keeps the log's own writes from waking the watcher's thread; the
/// tailer watches anew when the file appears or is replaced
/// (`LogSource::rewatch`).
pub(crate) fn watch(path: &Path, wake: SyncSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let watermark_path = shared_events::watermark::path_for(path);
    let watermark = watermark_path.file_name().map(|n| n.to_owned());
    let target = if watermark_path.exists() {
        watermark_path
    } else {
        dir
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = &event
            && !wakes_tailer(event, watermark.as_deref())
        {
            return;
        }
        // A full channel already holds a wake-up: coalesce.
        let _ = wake.try_send(());
    })
    .map_err(|e| tracing::warn!(error = %e, "no change notifications; polling only"))
    .ok()?;
    match watcher.watch(&target, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, path = %target.display(), "cannot watch the watermark; polling only");
            None
        }
    }
}

/// Whether a change notification may mean new durable events: a change to the
/// watermark file (`watermark`, its name). Opening or reading a file is an event
/// too (inotify's `IN_OPEN`): the tailer's own reads of the watermark must not wake
/// it, or it wakes itself forever and spins a core. Other files in the directory
/// (the log itself, snapshots, a second log) do not concern it. An event without
/// paths (the watcher lost track) wakes it, to be safe.
fn wakes_tailer(event: &notify::Event, watermark: Option<&std::ffi::OsStr>) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || (event.paths.iter()).any(|p| watermark.is_some() && p.file_name() == watermark)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, ModifyKind};
    use notify::{Event, EventKind};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    /// The tailer's own reads (inotify `IN_OPEN`, close after reading) must not wake
    /// it: they did, and an idle read side spun a core waking itself.
    #[test]
    fn only_changes_to_the_watermark_wake_the_tailer() {
        let path = shared_events::watermark::path_for(Path::new("/d/log.txt"));
        let names = path.file_name();
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(wakes_tailer(&event(modify, "/d/log.txt.durable"), names));
        assert!(wakes_tailer(
            &event(EventKind::Create(CreateKind::File), "/d/log.txt.durable"),
            names
        ));
        // The log's own writes: nothing past the watermark may be applied.
        assert!(!wakes_tailer(&event(modify, "/d/log.txt"), names));
        assert!(!wakes_tailer(
            &event(EventKind::Create(CreateKind::File), "/d/log.txt"),
            names
        ));
        for own_read in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!wakes_tailer(&event(own_read, "/d/log.txt.durable"), names));
            assert!(!wakes_tailer(&event(own_read, "/d/log.txt"), names));
        }
        assert!(!wakes_tailer(&event(modify, "/d/snapshots"), names));
        assert!(!wakes_tailer(&event(modify, "/d/other.txt"), names));
        // A watcher that lost track (no paths) wakes it, to be safe.
        assert!(wakes_tailer(&Event::new(EventKind::Any), names));
    }
}
