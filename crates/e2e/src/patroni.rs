//! A highly available PostgreSQL for failover tests: a primary and a
//! synchronous standby managed by Patroni (Debian's `patroni`, with
//! Debian's PostgreSQL 15 binaries), its consensus in a one-member etcd
//! (Debian's `etcd-server`), everything on free loopback ports with its
//! data in a temporary directory; and [`LeaderProxy`], the stable address
//! that follows the leader as a Kubernetes Service on Patroni's leader
//! label would (or HAProxy checking Patroni's REST API).
//!
//! PostgreSQL and Patroni run as the `postgres` user (initdb refuses root):
//! the tests need root. Timings are short (a leader key of 8 s, a loop of
//! 1 s), so a dead primary is replaced in about 8 to 10 s.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::procs::free_port;

/// Debian's PostgreSQL 15 server binaries.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The leader key's time to live: how long a dead primary keeps the lock.
pub const TTL_SECS: u64 = 8;

/// The superuser's password (password login over loopback, as the store
/// would log in to a real cluster).
pub const PASSWORD: &str = "postgres";

/// One Patroni member: its PostgreSQL and REST API ports, its process.
pub struct Node {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    data: PathBuf,
    config: PathBuf,
    log: PathBuf,
    patroni: Option<Child>,
}

impl Node {
    /// The PostgreSQL address.
    pub fn pg_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.pg_port))
    }

    /// The REST API address.
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    /// The postmaster's pid, from its pid file (None when not running).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

/// The cluster: etcd, two Patroni members, and the leader-following proxy.
pub struct Cluster {
    dir: tempfile::TempDir,
    etcd: Option<Child>,
    pub nodes: Vec<Node>,
    pub proxy: LeaderProxy,
}

/// The `postgres` user's uid and gid.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres") && f.len() > 3)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                .flatten()
        })
        .expect("no postgres user (apt-get install postgresql)")
}

fn log_file(path: &Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).expect("log file"))
}

/// The pids of `pid`'s children (from /proc).
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                // pid (comm) state ppid ...: comm may hold spaces.
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|pp| pp.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}

fn sigkill(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

impl Cluster {
    /// Starts etcd and two Patroni members and waits (at most two minutes,
    /// a guard against hanging) until one is the primary and the other its
    /// synchronous standby. Needs root, `etcd`, `patroni` and PostgreSQL 15.
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let (uid, gid) = postgres_ids();
        let ok = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown of the cluster's directory to postgres failed");
        let (client, peer) = (free_port(), free_port());
        let etcd_dir = dir.path().join("etcd");
        let etcd = Command::new("etcd")
            .args(["--name", "e0", "--data-dir"])
            .arg(&etcd_dir)
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=e0=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(log_file(&dir.path().join("etcd.log")))
            .spawn()
            .expect("etcd (apt-get install etcd-server)");
        let mut nodes = Vec::new();
        for i in 1..=2 {
            let name = format!("node{i}");
            let (pg_port, api_port) = (free_port(), free_port());
            let data = dir.path().join(format!("{name}-data"));
            let config = dir.path().join(format!("{name}.yml"));
            let yaml = patroni_yaml(&name, dir.path(), &data, pg_port, api_port, client);
            std::fs::write(&config, yaml).expect("patroni config");
            nodes.push(Node {
                log: dir.path().join(format!("{name}.log")),
                name,
                pg_port,
                api_port,
                data,
                config,
                patroni: None,
            });
        }
        let proxy = LeaderProxy::start(nodes.iter().map(Node::api_addr).collect(), {
            nodes.iter().map(Node::pg_addr).collect()
        })
        .await;
        let mut c = Cluster {
            dir,
            etcd: Some(etcd),
            nodes,
            proxy,
        };
        for i in 0..c.nodes.len() {
            c.start_patroni(i);
        }
        let start = Instant::now();
        loop {
            if let Some(leader) = c.proxy.leader()
                && c.sync_standby(leader).await.is_some()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no primary with a synchronous standby after two minutes:\n{}",
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c
    }

    fn start_patroni(&mut self, i: usize) {
        let (uid, gid) = postgres_ids();
        let node = &mut self.nodes[i];
        let child = Command::new("patroni")
            .arg(&node.config)
            .uid(uid)
            .gid(gid)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdout(log_file(&node.log))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&node.log)
                    .expect("log file"),
            ))
            .spawn()
            .expect("patroni (apt-get install patroni)");
        node.patroni = Some(child);
    }

    /// The synchronous standby of the leader `leader` (an index into
    /// `nodes`), as Patroni's REST API reports it: a member other than
    /// the leader answering 200 to `GET /sync`.
    pub async fn sync_standby(&self, leader: usize) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if i != leader && http_status(n.api_addr(), "/sync").await == Some(200) {
                return Some(i);
            }
        }
        None
    }

    /// Kills member `i` as a machine dies: SIGKILL, at once, to its
    /// Patroni, its postmaster and every backend. Killing only the
    /// postmaster would be a crash that Patroni (still holding the leader
    /// key) recovers on the same node, not a failover; killing only
    /// Patroni would leave a primary running without its manager.
    pub fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut pids = Vec::new();
        if let Some(p) = &node.patroni {
            pids.push(p.id());
        }
        if let Some(pm) = node.postmaster_pid() {
            pids.push(pm);
            pids.extend(children(pm));
        }
        sigkill(&pids);
        if let Some(mut p) = node.patroni.take() {
            let _ = p.wait();
        }
    }

    /// The store's connection string: the proxy, password login.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{}/postgres",
            self.proxy.addr
        )
    }

    /// Member `i`'s direct connection string (bypassing the proxy).
    pub fn node_url(&self, i: usize) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@{}/postgres",
            self.nodes[i].pg_addr()
        )
    }

    /// The last lines of etcd's and each member's log, for a failure
    /// message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.dir.path().join("etcd.log")];
        files.extend(self.nodes.iter().map(|n| n.log.clone()));
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", f.display()));
            for l in &lines[lines.len().saturating_sub(25)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        if let Some(mut e) = self.etcd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }
}

/// A member's Patroni configuration. Synchronous mode: a commit is
/// acknowledged only once the standby has it, so the standby that takes
/// over has every acknowledged transaction.
fn patroni_yaml(
    name: &str,
    dir: &Path,
    data: &Path,
    pg_port: u16,
    api_port: u16,
    etcd_port: u16,
) -> String {
    let dir = dir.display();
    let data = data.display();
    format!(
        "scope: mail-failover
name: {name}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: {TTL_SECS}
    loop_wait: 1
    retry_timeout: 3
    synchronous_mode: true
    postgresql:
      use_pg_rewind: false
      parameters:
        max_connections: 200
        # A process kill keeps the page cache: fsync buys nothing here,
        # and costs a loaded test machine a lot. Commits still wait for
        # the standby (synchronous_commit on, synchronous mode).
        fsync: 'off'
        wal_keep_size: 256MB
  initdb:
    - encoding: UTF8
    - auth: scram-sha-256
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {PG_BIN}
  pgpass: {dir}/{name}.pgpass
  authentication:
    superuser:
      username: postgres
      password: {PASSWORD}
    replication:
      username: replicator
      password: replicator
  parameters:
    unix_socket_directories: {dir}
"
    )
}

/// The status code of `GET path` on a Patroni REST API (None: no
/// answer within a second, or refused).
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    get(addr, path).await.ok()
}

/// `GET path`: the status code, or why there is none.
async fn get(addr: SocketAddr, path: &str) -> Result<u16, Probe> {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.map_err(|_| Probe::Dead)?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .map_err(|_| Probe::Silent)?;
        // The whole answer (HTTP/1.0: the server closes after it), so
        // Patroni never writes into a closed connection.
        let mut answer = Vec::new();
        (&mut s)
            .take(64 * 1024)
            .read_to_end(&mut answer)
            .await
            .map_err(|_| Probe::Silent)?;
        // "HTTP/1.0 200 OK"
        answer
            .get(9..12)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .ok_or(Probe::Silent)
    };
    tokio::time::timeout(Duration::from_secs(1), ask)
        .await
        .unwrap_or(Err(Probe::Silent))
}

/// What a poll of a member's `GET /primary` said.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Leader,
    NotLeader,
    /// Refused: Patroni is not running there.
    Dead,
    /// No answer in time (a loaded machine): not conclusive alone.
    Silent,
}

async fn probe(api: SocketAddr) -> Probe {
    match get(api, "/primary").await {
        Ok(200) => Probe::Leader,
        Ok(_) => Probe::NotLeader,
        Err(why) => why,
    }
}

/// The stable address of the primary: a TCP proxy that polls each
/// member's Patroni REST API (`GET /primary` answers 200 only on the
/// leader) every 200 ms and forwards new connections to the leader. When
/// the leader changes or is lost, the connections it forwarded there are
/// closed (as a Service whose endpoint went away); while there is no
/// leader, new connections are closed at once.
pub struct LeaderProxy {
    pub addr: SocketAddr,
    leader: watch::Receiver<Option<usize>>,
    /// Leader changes seen: (when, new leader).
    changes: Arc<std::sync::Mutex<LeaderLog>>,
}

/// The leaders the proxy switched to, and when (None: no leader).
type LeaderLog = Vec<(Instant, Option<usize>)>;

/// Polls between leader checks.
const POLL: Duration = Duration::from_millis(200);
/// Unanswered polls (not refusals) before a leader is taken as lost.
const SILENT_POLLS: u32 = 5;

impl LeaderProxy {
    async fn start(apis: Vec<SocketAddr>, pgs: Vec<SocketAddr>) -> LeaderProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (tx, rx) = watch::channel(None::<usize>);
        let changes: Arc<std::sync::Mutex<LeaderLog>> = Arc::default();
        let log = changes.clone();
        tokio::spawn(async move {
            let mut silent = 0;
            loop {
                let probes = futures_join(apis.iter().map(|a| probe(*a))).await;
                let current = *tx.borrow();
                let next = match probes.iter().position(|p| *p == Probe::Leader) {
                    Some(i) => Some(i),
                    None => match current {
                        Some(c) if probes[c] == Probe::Silent => {
                            silent += 1;
                            (silent < SILENT_POLLS).then_some(c)
                        }
                        _ => None,
                    },
                };
                if next.is_some_and(|n| probes[n] == Probe::Leader) {
                    silent = 0;
                }
                if next != current {
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((Instant::now(), next));
                    tx.send_replace(next);
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        });
        let leader = rx.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut leader = leader.clone();
                let Some(target) = *leader.borrow_and_update() else {
                    drop(inbound);
                    continue;
                };
                let to = pgs[target];
                tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(to).await else {
                        return;
                    };
                    let _ = out.set_nodelay(true);
                    let _ = inbound.set_nodelay(true);
                    let moved = async {
                        loop {
                            if leader.changed().await.is_err() {
                                return;
                            }
                            if *leader.borrow() != Some(target) {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = moved => {}
                    }
                });
            }
        });
        LeaderProxy {
            addr,
            leader: rx,
            changes,
        }
    }

    /// The member the proxy forwards to now.
    pub fn leader(&self) -> Option<usize> {
        *self.leader.borrow()
    }

    /// Waits until the proxy forwards to a member other than `old`, having
    /// switched after `since` (at most `limit`); when it first did.
    pub async fn wait_new_leader(
        &self,
        old: usize,
        since: Instant,
        limit: Duration,
    ) -> Option<(Instant, usize)> {
        let start = Instant::now();
        loop {
            let found = self
                .changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(at, _)| *at >= since)
                .find_map(|(at, l)| l.filter(|l| *l != old).map(|l| (*at, l)));
            if found.is_some() {
                return found;
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the futures concurrently and gives their outputs in order.
async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("probe task"));
    }
    out
}
