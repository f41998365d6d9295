//! Change notifications for a log file (the `notify` crate, inotify on Linux): the
//! tailer's wake-ups. Only changes to the log or its watermark wake it; its own
//! reads, and other files beside the log, do not.

use notify::Watcher;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

/// Watches the log's directory (the log may not exist yet, and the watermark file
/// lives there too) and turns every notification that concerns the log or the
/// watermark into a wake-up token.
pub(crate) fn watch_dir(path: &Path, wake: SyncSender<()>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let names = [
        path.file_name().map(|n| n.to_owned()),
        shared_events::watermark::path_for(path)
            .file_name()
            .map(|n| n.to_owned()),
    ];
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = &event
            && !wakes_tailer(event, &names)
        {
            return;
        }
        // A full channel already holds a wake-up: coalesce.
        let _ = wake.try_send(());
    })
    .map_err(|e| tracing::warn!(error = %e, "no change notifications; polling only"))
    .ok()?;
    match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the log directory; polling only");
            None
        }
    }
}

/// Whether a change notification may mean new durable events. Opening or reading
/// a file is an event too (inotify's `IN_OPEN`): the tailer's own reads of the
/// watermark must not wake it, or it wakes itself forever and spins a core. Other
/// files in the directory (snapshots, a second log) do not concern it either. An
/// event without paths (the watcher lost track) wakes it, to be safe.
fn wakes_tailer(event: &notify::Event, names: &[Option<std::ffi::OsString>; 2]) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|p| {
            let name = p.file_name().map(|n| n.to_owned());
            names.contains(&name)
        })
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
    fn only_changes_to_the_log_or_the_watermark_wake_the_tailer() {
        let names = [
            Some("log.txt".into()),
            Some(
                shared_events::watermark::path_for(Path::new("/d/log.txt"))
                    .file_name()
                    .unwrap()
                    .to_owned(),
            ),
        ];
        let modify = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(wakes_tailer(&event(modify, "/d/log.txt"), &names));
        assert!(wakes_tailer(&event(modify, "/d/log.txt.durable"), &names));
        assert!(wakes_tailer(
            &event(EventKind::Create(CreateKind::File), "/d/log.txt"),
            &names
        ));
        for own_read in [
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
        ] {
            assert!(!wakes_tailer(
                &event(own_read, "/d/log.txt.durable"),
                &names
            ));
            assert!(!wakes_tailer(&event(own_read, "/d/log.txt"), &names));
        }
        assert!(!wakes_tailer(&event(modify, "/d/snapshots"), &names));
        assert!(!wakes_tailer(&event(modify, "/d/other.txt"), &names));
        // A watcher that lost track (no paths) wakes it, to be safe.
        assert!(wakes_tailer(&Event::new(EventKind::Any), &names));
    }
}
