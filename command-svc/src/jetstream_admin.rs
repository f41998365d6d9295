//! The write side's administration of its JetStream stream: creating it as an event
//! log needs it (file storage, nothing ever discarded, no deletes or purges, dedupe
//! window, atomic batches allowed, the base subject and one per market), or checking
//! that an existing one keeps every event, allowing atomic batches and adding the
//! markets' subjects on one made by an older build. Only the writer creates or checks
//! the stream; readers only read it.
//!
//! A server that cannot publish atomic batches (older than 2.12) is refused: it would
//! ignore the batch headers and store each message alone, and as the writer fences
//! only a batch's first message, a message of a refused batch could then land on top
//! of another writer's.

use async_nats::jetstream::stream;
use plumbing::jetstream::{JetStream, JetStreamBounds, JetStreamError};
use std::time::{Duration, Instant};

/// How long the server remembers a `Nats-Msg-Id`: a publish retried within it is
/// dropped as a duplicate (the NATS default; retries take far less).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The oldest nats-server that publishes atomic batches (ADR-50).
pub const ATOMIC_BATCH_SERVER_MIN: (u64, u64) = (2, 12);

/// The write side's start: creates the stream if it does not exist (file
/// storage, `replicas` copies, nothing ever discarded), or checks that the
/// existing one keeps every event. Waits up to `ready_timeout` for JetStream to
/// answer (servers starting, a cluster electing its leader).
pub fn ensure_stream(
    js: &JetStream,
    replicas: usize,
    ready_timeout: Duration,
) -> Result<JetStreamBounds, JetStreamError> {
    let wanted = stream_config(js, replicas);
    check_server(js, ready_timeout)?;
    let deadline = Instant::now() + ready_timeout;
    let mut logged = false;
    loop {
        let (context, config) = (js.context().clone(), wanted.clone());
        let attempt = js.block_on(async move {
            match context.get_stream(&config.name).await {
                Ok(mut stream) => {
                    let mut info = stream.info().await.map_err(|e| e.to_string())?.clone();
                    let missing: Vec<String> = (config.subjects.iter())
                        .filter(|s| !info.config.subjects.contains(s))
                        .cloned()
                        .collect();
                    let holds_base = info.config.subjects.contains(&config.subjects[0]);
                    if holds_base && !missing.is_empty() {
                        // A stream of an older build, all on the base subject: its
                        // messages stay there, new ones go to the markets' subjects.
                        let mut added = info.config.clone();
                        added.subjects.extend(missing.iter().cloned());
                        info = context
                            .update_stream(added)
                            .await
                            .map_err(|e| format!("adding the markets' subjects to the stream: {e}"))?;
                        tracing::info!(
                            stream = %info.config.name,
                            added = ?missing,
                            "added the markets' subjects to the stream (made by an older build)"
                        );
                    }
                    if !info.config.allow_atomic_publish {
                        let mut allowed = info.config.clone();
                        allowed.allow_atomic_publish = true;
                        info = context
                            .update_stream(allowed)
                            .await
                            .map_err(|e| format!("allowing atomic batches on the stream: {e}"))?;
                        tracing::info!(stream = %info.config.name, "allowed atomic batches on the stream");
                    }
                    Ok((
                        info.config,
                        plumbing::jetstream::bounds_of(&info.state),
                        false,
                    ))
                }
                Err(e) if plumbing::jetstream::stream_missing(&e) => {
                    let mut stream = context
                        .create_stream(config)
                        .await
                        .map_err(|e| e.to_string())?;
                    let info = stream.info().await.map_err(|e| e.to_string())?;
                    Ok((
                        info.config.clone(),
                        plumbing::jetstream::bounds_of(&info.state),
                        true,
                    ))
                }
                Err(e) => Err(e.to_string()),
            }
        });
        match attempt {
            Ok((config, bounds, created)) => {
                check_config(js, &config, replicas)?;
                if created {
                    tracing::info!(url = %js.url(), replicas, "created the stream");
                }
                return Ok(bounds);
            }
            Err(last) if Instant::now() >= deadline => {
                return Err(JetStreamError::NotReady {
                    url: js.url().to_string(),
                    waited: ready_timeout,
                    last: js.explain(last),
                });
            }
            Err(last) => {
                let last = js.explain(last);
                if !logged {
                    tracing::info!(url = %js.url(), reason = %last, "waiting for JetStream");
                    logged = true;
                }
                std::thread::sleep(plumbing::jetstream::FEED_RETRY_INTERVAL);
            }
        }
    }
}

/// The stream as the write side creates it.
fn stream_config(js: &JetStream, replicas: usize) -> stream::Config {
    stream::Config {
        name: js.url().stream.clone(),
        description: Some("foldbook event log: one message per event, seq = event seq".into()),
        // The base subject first (ensure_stream relies on it).
        subjects: vec![js.subject().to_owned(), js.url().keyed_subjects()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        discard: stream::DiscardPolicy::New,
        max_message_size: shared_events::codec::LINE_BYTES_MAX as i32,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        allow_atomic_publish: true,
        ..Default::default()
    }
}

/// Refuses a server that cannot publish atomic batches. The client learns the
/// server's version when it connects, so this waits (up to `ready_timeout`) for the
/// first connection.
fn check_server(js: &JetStream, ready_timeout: Duration) -> Result<(), JetStreamError> {
    let client = js.context().client();
    let deadline = Instant::now() + ready_timeout;
    let version = loop {
        let version = client.server_info().version;
        if !version.is_empty() {
            break version;
        }
        if Instant::now() >= deadline {
            return Err(JetStreamError::NotReady {
                url: js.url().to_string(),
                waited: ready_timeout,
                last: js.explain("no connection to a NATS server"),
            });
        }
        std::thread::sleep(plumbing::jetstream::FEED_RETRY_INTERVAL);
    };
    match parse_version(&version) {
        Some(found) if found >= ATOMIC_BATCH_SERVER_MIN => Ok(()),
        _ => Err(JetStreamError::Stream {
            url: js.url().to_string(),
            message: format!(
                "nats-server {version} cannot publish atomic batches: foldbook needs \
                 nats-server {}.{} or later, whose streams allow them (`allow_atomic`, which \
                 command-svc sets); see docs/jetstream.md",
                ATOMIC_BATCH_SERVER_MIN.0, ATOMIC_BATCH_SERVER_MIN.1
            ),
        }),
    }
}

/// `(major, minor)` of a server version such as `2.15.1` or `v2.12.0-RC.1`.
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// An existing stream must hold our subjects in files and never drop a message.
fn check_config(
    js: &JetStream,
    config: &stream::Config,
    replicas: usize,
) -> Result<(), JetStreamError> {
    let wanted = [js.subject().to_owned(), js.url().keyed_subjects()];
    let problem = if !wanted.iter().all(|w| config.subjects.contains(w)) {
        Some(format!(
            "the stream exists with subjects {:?}, not {wanted:?}",
            config.subjects,
        ))
    } else if config.retention != stream::RetentionPolicy::Limits {
        Some(format!(
            "the stream's retention is {:?}: it would remove consumed events",
            config.retention
        ))
    } else if config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
        || !config.max_age.is_zero()
    {
        Some(
            "the stream has limits (max messages, bytes or age): it would drop old events"
                .to_owned(),
        )
    } else if !config.allow_atomic_publish {
        return Err(JetStreamError::Stream {
            url: js.url().to_string(),
            message: format!(
                "the stream does not allow atomic batches (`allow_atomic`) even after it was \
                 updated to: the server is too old; foldbook needs nats-server {}.{} or later \
                 (docs/jetstream.md)",
                ATOMIC_BATCH_SERVER_MIN.0, ATOMIC_BATCH_SERVER_MIN.1
            ),
        });
    } else {
        None
    };
    if let Some(message) = problem {
        return Err(JetStreamError::Stream {
            url: js.url().to_string(),
            message: format!("{message}; an event log never loses events (see docs/jetstream.md)"),
        });
    }
    if config.storage != stream::StorageType::File {
        tracing::warn!(url = %js.url(), "the stream is in memory: a server restart loses the log");
    }
    if config.num_replicas != replicas {
        tracing::warn!(
            url = %js.url(),
            stream_replicas = config.num_replicas,
            wanted = replicas,
            "the stream has {} replicas, --nats-replicas says {replicas}; leaving it as it is",
            config.num_replicas
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions_are_read_as_major_and_minor() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.12.0-RC.1"), Some((2, 12)));
        assert_eq!(parse_version("2.9.25"), Some((2, 9)));
        assert!(parse_version("2.9.25") < Some(ATOMIC_BATCH_SERVER_MIN));
        assert!(parse_version("3.0.0") >= Some(ATOMIC_BATCH_SERVER_MIN));
        assert_eq!(parse_version("garbage"), None);
    }
}
