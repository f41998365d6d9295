//! Where the event log lives, as given to `--log`: a file on this machine, or a NATS
//! JetStream stream (`nats://HOST:PORT/STREAM`) once the log has to outlive one
//! machine. Parsing only: the file is opened by each side's storage code, the
//! stream by the JetStream client both sides share (`command-svc/src/jetstream.rs`).
//!
//! A JetStream location names one or more servers (comma-separated, all of one
//! cluster: the client tries them in turn and learns the rest from the server) and
//! the stream. Each message of the stream is one log line without its newline, and
//! its stream sequence is the event's seq.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The scheme that selects JetStream.
pub const NATS_SCHEME: &str = "nats://";
/// Longest stream name accepted (NATS allows more; a file name is built from it).
pub const STREAM_NAME_BYTES_MAX: usize = 64;
/// Most servers one location may list.
pub const SERVERS_MAX: usize = 16;

/// Where the log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// A JSON Lines file (`log.txt`), with its watermark side file beside it.
    File(PathBuf),
    /// A JetStream stream.
    JetStream(JetStreamUrl),
}

/// A JetStream stream and the servers to reach it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamUrl {
    /// `host:port` of each server given, in order.
    pub servers: Vec<String>,
    /// The stream's name: letters, digits, `-` and `_`.
    pub stream: String,
}

/// Why a `--log` value is not a usable location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("{0}: expected nats://HOST:PORT[,HOST:PORT...]/STREAM")]
    Shape(String),
    #[error("{url}: server {server:?} is not HOST:PORT")]
    Server { url: String, server: String },
    #[error(
        "{url}: the stream name must be 1..={STREAM_NAME_BYTES_MAX} characters of A-Z a-z 0-9 - _"
    )]
    StreamName { url: String },
    /// Not echoed: the value would show a password in logs.
    #[error(
        "a nats:// log location must not carry credentials (user:password@ or token@ would \
         show in process lists and logs): set FOLDBOOK_NATS_USER and FOLDBOOK_NATS_PASSWORD, \
         FOLDBOOK_NATS_TOKEN or FOLDBOOK_NATS_CREDS instead (docs/jetstream.md)"
    )]
    Credentials,
    #[error("{url}: at most {SERVERS_MAX} servers")]
    TooManyServers { url: String },
    #[error("the log path is empty")]
    Empty,
}

impl LogLocation {
    /// The file's path, if the log is a file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            LogLocation::File(path) => Some(path),
            LogLocation::JetStream(_) => None,
        }
    }

    /// Where snapshots go unless `--snapshots` says otherwise: `snapshots/` beside a
    /// log file; `snapshots-<stream>/` in the working directory for a stream (a
    /// stream has no "beside", and each process keeps its own snapshots).
    pub fn default_snapshot_dir(&self) -> PathBuf {
        match self {
            LogLocation::File(path) => crate::snapshot::default_dir(path),
            LogLocation::JetStream(url) => PathBuf::from(format!("snapshots-{}", url.stream)),
        }
    }
}

impl JetStreamUrl {
    /// The one subject the stream holds: `foldbook.<stream>` (stream names cannot
    /// contain dots, so two streams' subjects never overlap).
    pub fn subject(&self) -> String {
        format!("foldbook.{}", self.stream)
    }

    /// The servers as client URLs (`nats://host:port`).
    pub fn server_urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("{NATS_SCHEME}{s}"))
            .collect()
    }
}

impl FromStr for JetStreamUrl {
    type Err = LocationError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let rest = url
            .strip_prefix(NATS_SCHEME)
            .ok_or_else(|| LocationError::Shape(url.to_owned()))?;
        let (servers, stream) = rest
            .split_once('/')
            .ok_or_else(|| LocationError::Shape(url.to_owned()))?;
        if servers.contains('@') {
            return Err(LocationError::Credentials);
        }
        let valid_name = !stream.is_empty()
            && stream.len() <= STREAM_NAME_BYTES_MAX
            && stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(LocationError::StreamName {
                url: url.to_owned(),
            });
        }
        let servers: Vec<String> = servers.split(',').map(str::to_owned).collect();
        if servers.len() > SERVERS_MAX {
            return Err(LocationError::TooManyServers {
                url: url.to_owned(),
            });
        }
        for server in &servers {
            let port_ok = server
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(LocationError::Server {
                    url: url.to_owned(),
                    server: server.clone(),
                });
            }
        }
        Ok(JetStreamUrl {
            servers,
            stream: stream.to_owned(),
        })
    }
}

impl FromStr for LogLocation {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        if s.starts_with(NATS_SCHEME) {
            return s.parse().map(LogLocation::JetStream);
        }
        Ok(LogLocation::File(PathBuf::from(s)))
    }
}

impl fmt::Display for JetStreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{NATS_SCHEME}{}/{}", self.servers.join(","), self.stream)
    }
}

impl fmt::Display for LogLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogLocation::File(path) => write!(f, "{}", path.display()),
            LogLocation::JetStream(url) => url.fmt(f),
        }
    }
}

impl From<PathBuf> for LogLocation {
    fn from(path: PathBuf) -> Self {
        LogLocation::File(path)
    }
}

impl From<&Path> for LogLocation {
    fn from(path: &Path) -> Self {
        LogLocation::File(path.to_owned())
    }
}

impl From<JetStreamUrl> for LogLocation {
    fn from(url: JetStreamUrl) -> Self {
        LogLocation::JetStream(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_a_file_and_nats_urls_name_servers_and_a_stream() {
        assert_eq!(
            "log.txt".parse::<LogLocation>().unwrap(),
            LogLocation::File("log.txt".into())
        );
        let one: LogLocation = "nats://127.0.0.1:4222/ORDERS".parse().unwrap();
        let LogLocation::JetStream(url) = &one else {
            panic!("{one:?}")
        };
        assert_eq!(url.servers, ["127.0.0.1:4222"]);
        assert_eq!(url.stream, "ORDERS");
        assert_eq!(url.subject(), "foldbook.ORDERS");
        assert_eq!(one.to_string(), "nats://127.0.0.1:4222/ORDERS");
        assert_eq!(
            one.default_snapshot_dir(),
            PathBuf::from("snapshots-ORDERS")
        );
        let three: JetStreamUrl = "nats://a:4222,b:4223,c:4224/book_1".parse().unwrap();
        assert_eq!(
            three.server_urls(),
            ["nats://a:4222", "nats://b:4223", "nats://c:4224"]
        );
        assert_eq!(
            LogLocation::File("data/log.txt".into()).default_snapshot_dir(),
            PathBuf::from("data/snapshots")
        );
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        for (bad, says) in [
            ("nats://127.0.0.1:4222", "expected nats://"),
            ("nats://127.0.0.1:4222/", "stream name"),
            ("nats://127.0.0.1:4222/a.b", "stream name"),
            ("nats://127.0.0.1:4222/a b", "stream name"),
            ("nats://127.0.0.1/S", "not HOST:PORT"),
            ("nats://127.0.0.1:99999/S", "not HOST:PORT"),
            ("nats://:4222/S", "not HOST:PORT"),
            ("nats://a:1,,b:2/S", "not HOST:PORT"),
        ] {
            let e = bad.parse::<LogLocation>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(
            format!("nats://{}/S", vec!["h:1"; SERVERS_MAX + 1].join(","))
                .parse::<LogLocation>()
                .is_err()
        );
        assert_eq!("".parse::<LogLocation>(), Err(LocationError::Empty));
        for secret in ["nats://me:s3cret@h:4222/S", "nats://s3cret@h:4222,h:4223/S"] {
            let e = secret.parse::<LogLocation>().unwrap_err();
            assert_eq!(e, LocationError::Credentials);
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
    }
}
