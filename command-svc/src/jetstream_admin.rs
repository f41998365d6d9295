//! The write side's administration of its JetStream stream: creating it as an event
//! log needs it (file storage, nothing ever discarded, no deletes or purges, dedupe
//! window), or checking that an existing one keeps every event. Only the writer
//! creates or checks the stream; readers only read it.

use async_nats::jetstream::stream;
use plumbing::jetstream::{JetStream, JetStreamBounds, JetStreamError};
use std::time::{Duration, Instant};

/// How long the server remembers a `Nats-Msg-Id`: a publish retried within it is
/// dropped as a duplicate (the NATS default; retries take far less).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

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
    let deadline = Instant::now() + ready_timeout;
    let mut logged = false;
    loop {
        let (context, config) = (js.context().clone(), wanted.clone());
        let attempt = js.block_on(async move {
            match context.get_stream(&config.name).await {
                Ok(mut stream) => {
                    let info = stream.info().await.map_err(|e| e.to_string())?;
                    Ok((
                        info.config.clone(),
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
        subjects: vec![js.subject().to_owned()],
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
        ..Default::default()
    }
}

/// An existing stream must hold our subject in files and never drop a message.
fn check_config(
    js: &JetStream,
    config: &stream::Config,
    replicas: usize,
) -> Result<(), JetStreamError> {
    let problem = if !config.subjects.iter().any(|s| s == js.subject()) {
        Some(format!(
            "the stream exists with subjects {:?}, not {}",
            config.subjects,
            js.subject()
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
    } else {
        None
    };
    if let Some(message) = problem {
        return Err(JetStreamError::Stream {
            url: js.url().to_string(),
            message: format!("{message}; an event log never loses events (see README, JetStream)"),
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
