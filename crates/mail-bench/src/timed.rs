//! A line-based IMAP client for the benchmarks that time single commands
//! (`sync`, `change-cost`): each command's untagged lines, tagged line
//! and time from sending to the tagged line.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One logged-in IMAP connection.
pub(crate) struct Conn {
    pub(crate) r: BufReader<OwnedReadHalf>,
    pub(crate) w: OwnedWriteHalf,
    n: u32,
    /// The number of messages, as EXISTS and EXPUNGE responses told.
    pub(crate) exists: usize,
}

impl Conn {
    pub(crate) async fn login(addr: &str, user: &str, password: &str) -> anyhow::Result<Self> {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| addr.to_string())?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Self {
            r: BufReader::new(r),
            w,
            n: 0,
            exists: 0,
        };
        let mut greeting = String::new();
        c.r.read_line(&mut greeting).await?;
        c.cmd(&format!("LOGIN {user} {password}")).await?;
        Ok(c)
    }

    /// Sends a command; returns its untagged lines (literals skipped),
    /// the tagged line, and the time from sending to the tagged line. Not
    /// OK is an error.
    pub(crate) async fn cmd(
        &mut self,
        cmd: &str,
    ) -> anyhow::Result<(Vec<String>, String, Duration)> {
        self.n += 1;
        let tag = format!("t{}", self.n);
        let start = Instant::now();
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        let mut lines = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self.r.read_until(b'\n', &mut line).await?;
            anyhow::ensure!(n > 0, "connection closed during {cmd}");
            if line.ends_with(b"}\r\n")
                && let Some(open) = line.iter().rposition(|&b| b == b'{')
                && let Ok(len) = std::str::from_utf8(&line[open + 1..line.len() - 3])
                    .unwrap_or("")
                    .trim_end_matches('+')
                    .parse::<usize>()
            {
                let mut buf = vec![0u8; len];
                self.r.read_exact(&mut buf).await?;
            }
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if let Some(n) = text
                .strip_prefix("* ")
                .and_then(|t| t.strip_suffix(" EXISTS"))
                .and_then(|n| n.parse().ok())
            {
                self.exists = n;
            }
            if text
                .strip_prefix("* ")
                .and_then(|t| t.strip_suffix(" EXPUNGE"))
                .is_some_and(|n| n.parse::<u32>().is_ok())
            {
                self.exists = self.exists.saturating_sub(1);
            }
            if let Some(rest) = text.strip_prefix(&format!("{tag} ")) {
                anyhow::ensure!(rest.starts_with("OK"), "{cmd}: {text}");
                return Ok((lines, text, start.elapsed()));
            }
            lines.push(text);
        }
    }
}
