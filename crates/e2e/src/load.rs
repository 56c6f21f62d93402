//! Protocol clients for the fault tests (`fault.rs`, `pg_failover.rs`,
//! `replica_loss.rs`):
//! plain line-based sessions over loopback that report exactly what the
//! server answered, so a test can check every acknowledgement afterwards
//! and tell a temporary answer from a dropped connection.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::message;

/// A connection's two halves, the reading one buffered.
pub type Conn = (BufReader<OwnedReadHalf>, OwnedWriteHalf);

/// Connects to `port` on loopback and reads the greeting line (None: no
/// connection or no greeting within the guards).
pub async fn connect(port: u16) -> Option<Conn> {
    let t = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    let (r, w) = t.into_split();
    let mut r = BufReader::new(r);
    let mut greeting = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut greeting))
        .await
        .ok()?
        .ok()?;
    Some((r, w))
}

/// The next line (None: the connection closed, or a minute without one,
/// a guard against hanging).
pub async fn line(r: &mut BufReader<OwnedReadHalf>) -> Option<String> {
    let mut l = String::new();
    match tokio::time::timeout(Duration::from_secs(60), r.read_line(&mut l)).await {
        Ok(Ok(n)) if n > 0 => Some(l),
        _ => None,
    }
}

/// One SMTP delivery of a message with Message-ID `<id@remote.example>`
/// to `rcpt`; the final reply code (0: the connection was lost or never
/// made).
pub async fn smtp_once(port: u16, id: &str, rcpt: &str) -> u16 {
    match connect(port).await {
        Some(conn) => smtp_on(conn, id, rcpt).await,
        None => 0,
    }
}

/// [`smtp_once`] over a connection already made (its greeting read): the
/// final reply code, 0 if the connection was lost.
pub async fn smtp_on((mut r, mut w): Conn, id: &str, rcpt: &str) -> u16 {
    for cmd in [
        "HELO f.example".to_string(),
        "MAIL FROM:<f@remote.example>".into(),
        format!("RCPT TO:<{rcpt}>"),
        "DATA".into(),
    ] {
        if w.write_all(format!("{cmd}\r\n").as_bytes()).await.is_err() {
            return 0;
        }
        let Some(l) = line(&mut r).await else {
            return 0;
        };
        let code: u16 = l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if code >= 400 {
            let _ = w.write_all(b"QUIT\r\n").await;
            return code;
        }
    }
    let _ = w.write_all(&message(id, "under faults")).await;
    let _ = w.write_all(b".\r\n").await;
    let code = line(&mut r)
        .await
        .and_then(|l| l.get(..3).and_then(|c| c.parse().ok()))
        .unwrap_or(0);
    let _ = w.write_all(b"QUIT\r\n").await;
    code
}

/// What a TCP load balancer in front of a service's replicas does for
/// the test's clients (a Kubernetes Service, a cloud load balancer): each
/// new connection goes to the next replica in turn; a replica that
/// refuses the connection (stopped, not yet listening again) or closes it
/// before its greeting is skipped, as a Service drops an endpoint that
/// stopped. It counts what it skipped and where each connection went.
pub struct Balancer {
    ports: Vec<u16>,
    /// How a good greeting starts (`* OK`, `+OK`, `220`).
    greeting: &'static str,
    next: std::sync::atomic::AtomicUsize,
    log: std::sync::Mutex<BalancerLog>,
}

/// What a [`Balancer`] saw.
#[derive(Clone, Debug, Default)]
pub struct BalancerLog {
    /// Each connection handed to a client: (replica index, when).
    pub connections: Vec<(usize, std::time::Instant)>,
    /// Connections refused (nothing listening): (replica index, when).
    pub refused: Vec<(usize, std::time::Instant)>,
    /// Connections accepted but closed, or answered with something other
    /// than a greeting (a `* BYE`, `-ERR`, `421`), before the client said
    /// anything: (replica index, when, the first line or why).
    pub turned_away: Vec<(usize, std::time::Instant, String)>,
}

impl Balancer {
    /// A balancer over the replicas listening on `ports` (loopback) whose
    /// greeting starts with `greeting`.
    pub fn new(ports: Vec<u16>, greeting: &'static str) -> Self {
        Self {
            ports,
            greeting,
            next: std::sync::atomic::AtomicUsize::new(0),
            log: std::sync::Mutex::default(),
        }
    }

    /// The replicas' ports, in index order.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// A copy of what it saw so far.
    pub fn log(&self) -> BalancerLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A connection to the next replica that takes it, its greeting read:
    /// (replica index, when the connection was asked for, connection).
    /// None when no replica greeted a client for a minute (a guard against
    /// hanging).
    pub async fn connect(&self) -> Option<(usize, std::time::Instant, Conn)> {
        use std::sync::atomic::Ordering;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            for _ in 0..self.ports.len() {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ports.len();
                let now = std::time::Instant::now();
                let tcp = match tokio::time::timeout(
                    Duration::from_secs(5),
                    TcpStream::connect(("127.0.0.1", self.ports[i])),
                )
                .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(_)) | Err(_) => {
                        self.record(|l| l.refused.push((i, now)));
                        continue;
                    }
                };
                let (r, w) = tcp.into_split();
                let mut r = BufReader::new(r);
                let mut greeting = String::new();
                let why =
                    match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut greeting))
                        .await
                    {
                        Ok(Ok(n)) if n > 0 && greeting.starts_with(self.greeting) => {
                            self.record(|l| l.connections.push((i, now)));
                            return Some((i, now, (r, w)));
                        }
                        Ok(Ok(0)) => "closed before the greeting".to_string(),
                        Ok(Ok(_)) => greeting.trim_end().to_string(),
                        Ok(Err(e)) => format!("read: {e}"),
                        Err(_) => "no greeting within 10 s".to_string(),
                    };
                self.record(|l| l.turned_away.push((i, now, why)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn record(&self, f: impl FnOnce(&mut BalancerLog)) {
        f(&mut self.log.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// `GET path` on a loopback HTTP port (a service's admin port): the
/// status and the body, None if it does not answer within seconds.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The status code of `GET path` on a service's admin port (None: no
/// answer within a few seconds).
pub async fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).await.map(|(status, _)| status)
}

/// A service's `/counters` (`name value` lines), None unless it answers
/// 200.
pub async fn counters(admin: u16) -> Option<Vec<(String, u64)>> {
    match http_get(admin, "/counters").await? {
        (200, body) => Some(
            body.lines()
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Whether an untagged FETCH among `lines` gives `uid` the flag `flag`.
pub fn fetched_flag(lines: &[String], uid: u32, flag: &str) -> bool {
    lines.iter().any(|l| {
        let words: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        words.get(2) == Some(&"FETCH")
            && words
                .windows(2)
                .any(|w| w[0] == "UID" && w[1] == uid.to_string())
            && words.contains(&flag)
    })
}

/// The local part of the first `Message-ID: <...@` of a message.
pub fn message_id(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split("Message-ID: <")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .unwrap_or_default()
        .to_string()
}

/// A mailbox as the store has it, read over its API (not through a
/// gateway): its UIDVALIDITY and (UID, flags, Message-ID local part) of
/// every message, the bodies fetched in batches.
pub async fn stored(
    client: &crate::StoreClient,
    user: &str,
    password: &str,
    mailbox: &str,
) -> (u32, Vec<(u32, mailbox_api::pb::Flags, String)>) {
    use mailbox_api::pb;
    let mut c = client.login(user, password).await;
    let mut s = c
        .select(pb::SelectRequest {
            name: mailbox.into(),
            read_only: true,
        })
        .await
        .expect("Select")
        .into_inner();
    let (mut validity, mut uids) = (0, Vec::new());
    while let Some(p) = s.message().await.expect("Select stream") {
        match p.part {
            Some(pb::select_response::Part::Status(st)) => validity = st.uid_validity,
            Some(pb::select_response::Part::Batch(b)) => {
                uids.extend(b.messages.into_iter().map(|m| m.uid))
            }
            None => {}
        }
    }
    let mut out = Vec::new();
    for batch in uids.chunks(200) {
        let mut s = c
            .fetch(pb::FetchRequest {
                mailbox: mailbox.into(),
                uids: Some(pb::UidSet::of(batch.iter().copied())),
                with_data: true,
                ..Default::default()
            })
            .await
            .expect("Fetch")
            .into_inner();
        while let Some(r) = s.message().await.expect("Fetch stream") {
            for m in r.messages {
                let id = message_id(m.data.as_deref().unwrap_or_default());
                out.push((m.uid, m.flags.unwrap_or_default(), id));
            }
        }
    }
    (validity, out)
}
