//! One client connection: writes commands, frames responses (lines and
//! literals) with imap-codec's `Fragmentizer`, decodes them with its
//! `ResponseCodec`, feeds each to the session [`Model`] and keeps the
//! transcript a violation report shows.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imap_codec::ResponseCodec;
use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::imap_types::ToStatic;
use imap_codec::imap_types::response::{Code, Response, Status, StatusKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::model::{Cmd, Model, Registry};
use super::{Shared, Violation};

/// Lines of transcript kept per session.
const TRANSCRIPT: usize = 120;
/// Longest transcript line kept.
const LINE_CUT: usize = 240;
/// Longest response accepted (a whole message with literals).
const MAX_RESPONSE: u32 = 64 << 20;
/// A response slower than this is reported as an error.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a command ended.
#[derive(Debug)]
pub struct Outcome {
    pub kind: StatusKind,
    pub code: Option<Code<'static>>,
    pub text: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.kind == StatusKind::Ok
    }
}

pub struct Conn {
    tcp: TcpStream,
    frag: Fragmentizer,
    pub model: Model,
    shared: Arc<Shared>,
    transcript: VecDeque<String>,
    next_tag: u64,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(
        addr: std::net::SocketAddr,
        model: Model,
        shared: Arc<Shared>,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let mut c = Self {
            tcp,
            frag: Fragmentizer::new(MAX_RESPONSE),
            model,
            shared,
            transcript: VecDeque::new(),
            next_tag: 0,
            buf: vec![0; 64 * 1024],
        };
        let greeting = c.read_response().await?;
        anyhow::ensure!(
            matches!(greeting, Response::Status(Status::Untagged(ref b)) if b.kind == StatusKind::Ok),
            "greeting: {greeting:?}"
        );
        Ok(c)
    }

    /// Keeps the first line of a message (literals are summarised).
    fn note(&mut self, dir: &str, bytes: &[u8]) {
        let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
        let more = lines.len().saturating_sub(1);
        if let Some(line) = lines.first() {
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end();
            let cut: String = text.chars().take(LINE_CUT).collect();
            if self.transcript.len() == TRANSCRIPT {
                self.transcript.pop_front();
            }
            let tail = if more > 0 {
                format!(" [+{more} lines]")
            } else {
                String::new()
            };
            self.transcript.push_back(format!("{dir} {cut}{tail}"));
        }
    }

    /// The server ended the connection: a violation unless after LOGOUT.
    fn lost(&mut self, how: &str) {
        if let Some(rule) = self.model.disconnected(how) {
            self.violation(rule);
        }
    }

    fn violation(&self, rule: String) {
        let v = Violation {
            session: self.model.session,
            account: self.model.account.clone(),
            rule,
            transcript: self.transcript.iter().cloned().collect(),
        };
        self.shared.report(v);
    }

    /// Reads and decodes the next response; one that does not parse is a
    /// violation and is skipped.
    async fn read_response(&mut self) -> anyhow::Result<Response<'static>> {
        loop {
            while let Some(_fragment) = self.frag.progress() {
                if !self.frag.is_message_complete() {
                    continue;
                }
                let bytes = self.frag.message_bytes().to_vec();
                self.note("S:", &bytes);
                match self.frag.decode_message(&ResponseCodec::default()) {
                    Ok(r) => return Ok(r.to_static()),
                    Err(e) => {
                        self.violation(format!("response does not parse: {e:?}"));
                    }
                }
            }
            let n = tokio::time::timeout(RESPONSE_TIMEOUT, self.tcp.read(&mut self.buf))
                .await
                .map_err(|_| anyhow::anyhow!("no response within {RESPONSE_TIMEOUT:?}"))?;
            let n = match n {
                Ok(0) => {
                    self.lost("connection closed by the server");
                    anyhow::bail!("connection closed by the server");
                }
                Ok(n) => n,
                Err(e) => {
                    self.lost(&format!("connection error: {e}"));
                    return Err(e.into());
                }
            };
            self.frag.enqueue_bytes(&self.buf[..n]);
        }
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("s{}t{}", self.model.session, self.next_tag)
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.note("C:", bytes);
        self.tcp.write_all(bytes).await?;
        Ok(())
    }

    /// Feeds one response to the model; reports what it breaks.
    fn check(&mut self, r: &Response<'static>, registry: &Registry) {
        for rule in self.model.on_response(r, registry) {
            self.violation(rule);
        }
    }

    /// Runs one command (`line` without tag and CRLF, then `literal` as a
    /// synchronizing literal if given: APPEND), checking every response;
    /// returns its outcome and time.
    pub async fn run_with_literal(
        &mut self,
        cmd: Cmd,
        line: &str,
        literal: Option<&[u8]>,
    ) -> anyhow::Result<(Outcome, Duration)> {
        let tag = self.tag();
        let started = Instant::now();
        self.model.begin(cmd, &self.shared.registry);
        let head = match literal {
            Some(l) => format!("{tag} {line} {{{}}}\r\n", l.len()),
            None => format!("{tag} {line}\r\n"),
        };
        self.send(head.as_bytes()).await?;
        let shared = self.shared.clone();
        let mut pending = literal;
        loop {
            let r = self.read_response().await?;
            if let (Response::CommandContinuationRequest(_), Some(data)) = (&r, pending.take()) {
                let mut bytes = data.to_vec();
                bytes.extend_from_slice(b"\r\n");
                self.note(
                    "C:",
                    format!("[{} bytes of literal]", data.len()).as_bytes(),
                );
                self.tcp.write_all(&bytes).await?;
                continue;
            }
            self.check(&r, &shared.registry);
            match r {
                Response::Status(Status::Tagged(t)) if t.tag.inner() == tag => {
                    return Ok((
                        Outcome {
                            kind: t.body.kind,
                            code: t.body.code,
                            text: t.body.text.to_string(),
                        },
                        started.elapsed(),
                    ));
                }
                Response::Status(Status::Bye(b))
                    if !matches!(self.model.current(), Some(Cmd::Logout)) =>
                {
                    self.lost(&format!("BYE {}", b.text));
                    anyhow::bail!("BYE from the server: {}", b.text);
                }
                _ => {}
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.tcp.shutdown().await;
    }
}
