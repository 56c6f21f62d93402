//! Protocol clients for the fault tests (`fault.rs`, `pg_failover.rs`):
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
    let Some((mut r, mut w)) = connect(port).await else {
        return 0;
    };
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
