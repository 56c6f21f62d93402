//! One SMTP or LMTP session: the RFC 5321 state machine with the
//! extensions we advertise (SIZE, PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
//! SMTPUTF8, CHUNKING, STARTTLS), and the DATA reader.
//!
//! Replies carry RFC 3463 enhanced status codes. Replies to pipelined
//! commands (RFC 2920) are written as they are produced and flushed once
//! the client's buffered input is used up.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use mail_types::EmailAddress;
use mailbox_api::StoreChannel;
use mailbox_api::{CallAuth, DeliveryClient, pb};
use service_kit::CancellationToken;
use service_kit::conn::{Connection, Line, ReadError, Stream};
use service_kit::limit::PerIpLimit;
use smtp_wire::Data;
use smtp_wire::smtp_proto::{Error as ParseError, MAIL_SMTPUTF8, Request};
use tokio::net::TcpStream;

use crate::config::SmtpSettings;
use crate::deliver::{self, Outgoing};

/// Which listener a session came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SMTP with STARTTLS.
    Smtp,
    /// SMTP in implicit TLS.
    Smtps,
    /// LMTP: LHLO, one reply per recipient after the data.
    Lmtp,
}

/// What every session of a listener shares.
pub(crate) struct Ctx {
    pub settings: SmtpSettings,
    pub tls: Option<service_kit::tls::ReloadingTls>,
    pub auth: CallAuth,
    pub channel: StoreChannel,
    pub per_ip: PerIpLimit,
    pub shutdown: CancellationToken,
}

/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) async fn handle(ctx: Arc<Ctx>, tcp: TcpStream, peer: SocketAddr, mode: Mode) {
    let slot = ctx.per_ip.try_acquire(peer.ip());
    let conn = if mode == Mode::Smtps {
        let Some(acceptor) = &ctx.tls else { return };
        match Connection::accept_tls(tcp, peer, &acceptor.acceptor(), TLS_HANDSHAKE_TIMEOUT).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
        }
    } else {
        Connection::new(Stream::Plain(tcp), peer)
    };
    let delivery = mailbox_api::delivery_client(ctx.channel.clone(), ctx.auth.clone());
    let mut s = Session {
        ctx: ctx.clone(),
        conn,
        mode,
        delivery,
        helo: None,
        tx: None,
        errors: 0,
        commands: 0,
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        last_code: 0,
    };
    let span = tracing::info_span!("smtp_session", %peer, ?mode, id = %s.id);
    let _ = tracing::Instrument::instrument(
        async move {
            if slot.is_none() {
                let _ = s
                    .reply(421, "4.7.0 Too many connections from your address")
                    .await;
                s.conn.shutdown().await;
                return;
            }
            if let Err(e) = s.run().await {
                tracing::debug!(error = %e, "session ended");
            }
            s.conn.shutdown().await;
            drop(slot);
        },
        span,
    )
    .await;
}

struct Envelope {
    from: String,
    rcpts: Vec<String>,
    declared_size: u64,
    smtputf8: bool,
    /// CHUNKING: the data received so far, or why it was refused.
    bdat: Option<Result<Vec<u8>, Refusal>>,
}

#[derive(Clone, Copy)]
enum Refusal {
    TooBig,
}

struct Session {
    ctx: Arc<Ctx>,
    conn: Connection,
    mode: Mode,
    delivery: DeliveryClient,
    /// HELO/EHLO/LHLO name and whether the client speaks ESMTP.
    helo: Option<(String, bool)>,
    tx: Option<Envelope>,
    errors: usize,
    commands: usize,
    id: String,
    /// The code of the last reply sent (for metrics).
    last_code: u16,
}

type Io = std::io::Result<()>;

/// Why the session loop stopped.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("client closed")]
    Closed,
}

impl Session {
    fn settings(&self) -> &SmtpSettings {
        &self.ctx.settings
    }

    async fn write(&mut self, text: &str) -> Io {
        if let Some(code) = text.get(..3).and_then(|c| c.parse().ok()) {
            self.last_code = code;
        }
        self.conn.write_all(text.as_bytes()).await?;
        // PIPELINING: flush once every buffered command is answered.
        if self.conn.buffered() == 0 {
            self.conn.flush().await?;
        }
        Ok(())
    }

    async fn reply(&mut self, code: u16, text: &str) -> Io {
        self.write(&format!("{code} {text}\r\n")).await
    }

    /// A protocol error: answered, counted, and past the limit the session
    /// is closed.
    async fn error(&mut self, code: u16, text: &str) -> Result<(), End> {
        self.errors += 1;
        if self.errors >= self.settings().max_errors {
            self.reply(421, "4.7.0 Too many errors, closing connection")
                .await?;
            return Err(End::Closed);
        }
        self.reply(code, text).await?;
        Ok(())
    }

    async fn run(&mut self) -> Result<(), End> {
        let host = self.settings().hostname.clone();
        let proto = if self.mode == Mode::Lmtp {
            "LMTP"
        } else {
            "ESMTP"
        };
        self.reply(220, &format!("{host} {proto} smtp-ingest ready"))
            .await?;
        loop {
            let max = self.settings().max_line_length;
            let timeout = self.settings().command_timeout;
            let line = tokio::select! {
                l = self.conn.read_line(max, timeout) => l,
                _ = self.ctx.shutdown.cancelled() => {
                    self.reply(421, "4.3.2 Service shutting down, try again later").await?;
                    return Err(End::Closed);
                }
            };
            let line = match line {
                Ok(Line::Complete(l)) => l,
                Ok(Line::TooLong { .. }) => {
                    self.error(500, "5.5.2 Line too long").await?;
                    continue;
                }
                Ok(Line::Eof) => return Err(End::Closed),
                Err(ReadError::Timeout) => {
                    self.reply(421, "4.4.2 Timeout, closing connection").await?;
                    return Err(End::Closed);
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            };
            self.commands += 1;
            if self.commands > self.settings().max_commands {
                self.reply(421, "4.7.0 Too many commands, closing connection")
                    .await?;
                return Err(End::Closed);
            }
            let parsed = smtp_wire::parse_command(&line);
            let started = std::time::Instant::now();
            let name = match &parsed {
                Ok(r) => r.name(),
                Err(_) => "INVALID",
            };
            let span = tracing::info_span!("smtp.command", command = name);
            let go_on = tracing::Instrument::instrument(
                async {
                    match parsed {
                        Ok(req) => self.command(req).await,
                        Err(e) => self.parse_error(e).await.map(|_| true),
                    }
                },
                span,
            )
            .await;
            let outcome = match self.last_code / 100 {
                2 | 3 => "ok",
                4 => "temporary",
                _ => "error",
            };
            service_kit::metrics::command(
                if self.mode == Mode::Lmtp {
                    "lmtp"
                } else {
                    "smtp"
                },
                name,
                outcome,
                started,
            );
            if !go_on? {
                return Ok(());
            }
        }
    }

    async fn parse_error(&mut self, e: ParseError) -> Result<(), End> {
        match e {
            ParseError::UnknownCommand => self.error(500, "5.5.2 Command unrecognized").await,
            ParseError::SyntaxError { syntax } => {
                self.error(501, &format!("5.5.4 Syntax: {syntax}")).await
            }
            ParseError::InvalidSenderAddress => {
                self.error(501, "5.1.7 Bad sender address syntax").await
            }
            ParseError::InvalidRecipientAddress => {
                self.error(501, "5.1.3 Bad recipient address syntax").await
            }
            ParseError::InvalidParameter { param } => {
                self.error(501, &format!("5.5.4 Invalid parameter {param}"))
                    .await
            }
            ParseError::UnsupportedParameter { .. } => {
                self.error(555, "5.5.4 Unsupported parameter").await
            }
            _ => self.error(500, "5.5.2 Syntax error").await,
        }
    }

    /// Handles one command; `false` ends the session (QUIT).
    async fn command(&mut self, req: Request<String>) -> Result<bool, End> {
        match req {
            Request::Ehlo { host } | Request::Helo { host } if self.mode == Mode::Lmtp => {
                let _ = host;
                self.error(500, "5.5.1 This is LMTP: use LHLO").await?;
            }
            Request::Lhlo { .. } if self.mode != Mode::Lmtp => {
                self.error(500, "5.5.1 Command unrecognized").await?;
            }
            Request::Ehlo { host } | Request::Lhlo { host } => {
                self.tx = None;
                self.helo = Some((sanitize_host(&host), true));
                let mut lines = vec![format!("{} greets {}", self.settings().hostname, sanitize_host(&host))];
                lines.push("PIPELINING".into());
                lines.push(format!("SIZE {}", self.settings().max_message_size));
                lines.push("8BITMIME".into());
                lines.push("ENHANCEDSTATUSCODES".into());
                lines.push("SMTPUTF8".into());
                lines.push("CHUNKING".into());
                if self.ctx.tls.is_some() && !self.conn.is_tls() {
                    lines.push("STARTTLS".into());
                }
                lines.push("HELP".into());
                let n = lines.len();
                let mut out = String::new();
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i + 1 == n { ' ' } else { '-' };
                    out.push_str(&format!("250{sep}{l}\r\n"));
                }
                self.write(&out).await?;
            }
            Request::Helo { host } => {
                self.tx = None;
                self.helo = Some((sanitize_host(&host), false));
                let me = self.settings().hostname.clone();
                self.reply(250, &me).await?;
            }
            Request::StartTls => self.starttls().await?,
            Request::Mail { from } => self.mail(from).await?,
            Request::Rcpt { to } => self.rcpt(to).await?,
            Request::Data => self.data().await?,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await?,
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0 Ok").await?;
            }
            Request::Noop { .. } => self.reply(250, "2.0.0 Ok").await?,
            Request::Quit => {
                self.reply(221, "2.0.0 Bye").await?;
                return Ok(false);
            }
            Request::Vrfy { .. } => {
                self.reply(
                    252,
                    "2.5.0 Cannot VRFY user, but will accept message and attempt delivery",
                )
                .await?
            }
            Request::Help { .. } => {
                self.reply(
                    214,
                    "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
                )
                .await?
            }
            Request::Expn { .. }
            | Request::Auth { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => {
                self.error(502, "5.5.1 Command not implemented").await?;
            }
        }
        Ok(true)
    }

    async fn starttls(&mut self) -> Result<(), End> {
        let Some(acceptor) = self
            .ctx
            .tls
            .as_ref()
            .map(|t| t.acceptor())
            .filter(|_| !self.conn.is_tls())
        else {
            return self.error(502, "5.5.1 STARTTLS not available").await;
        };
        if self.conn.buffered() > 0 {
            // Commands pipelined after STARTTLS must never run inside TLS.
            return self
                .error(501, "5.5.1 Data pipelined after STARTTLS; not starting TLS")
                .await;
        }
        self.reply(220, "2.0.0 Ready to start TLS").await?;
        self.conn.flush().await?;
        self.conn
            .start_tls(&acceptor, TLS_HANDSHAKE_TIMEOUT)
            .await?;
        // RFC 3207 4.2: forget everything learnt before TLS.
        self.helo = None;
        self.tx = None;
        Ok(())
    }

    async fn mail(&mut self, from: smtp_wire::smtp_proto::MailFrom<String>) -> Result<(), End> {
        if self.helo.is_none() {
            return self.error(503, "5.5.1 Send EHLO/HELO first").await;
        }
        if self.tx.is_some() {
            return self.error(503, "5.5.1 Nested MAIL command").await;
        }
        let max = self.settings().max_message_size;
        if from.size as u64 > max {
            return self
                .reply(552, "5.3.4 Message size exceeds fixed maximum message size")
                .await
                .map_err(End::from);
        }
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let address = from.address.trim().to_string();
        if !address.is_empty() {
            if !address.is_ascii() && !smtputf8 {
                return self
                    .error(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
                    .await;
            }
            if EmailAddress::parse(&address).is_err() {
                return self.error(501, "5.1.7 Bad sender address syntax").await;
            }
        }
        self.tx = Some(Envelope {
            from: address,
            rcpts: Vec::new(),
            declared_size: from.size as u64,
            smtputf8,
            bdat: None,
        });
        self.reply(250, "2.1.0 Ok").await?;
        Ok(())
    }

    async fn rcpt(&mut self, to: smtp_wire::smtp_proto::RcptTo<String>) -> Result<(), End> {
        let max = self.settings().max_recipients;
        let Some(tx) = &self.tx else {
            return self.error(503, "5.5.1 Need MAIL command").await;
        };
        if tx.rcpts.len() >= max {
            return Ok(self.reply(452, "4.5.3 Too many recipients").await?);
        }
        if !to.address.is_ascii() && !tx.smtputf8 {
            return self
                .error(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
                .await;
        }
        let Ok(address) = EmailAddress::parse(&to.address) else {
            return self.error(501, "5.1.3 Bad recipient address syntax").await;
        };
        let size = tx.declared_size;
        let mut client = self.delivery.clone();
        let checked = client
            .check_recipient(pb::CheckRecipientRequest {
                address: address.as_str().to_string(),
                size_hint: size,
            })
            .await
            .map(|r| r.into_inner().status());
        use pb::RecipientStatus as R;
        match checked {
            Ok(R::Accept) => {
                if let Some(tx) = &mut self.tx
                    && !tx.rcpts.iter().any(|r| r == address.as_str())
                {
                    tx.rcpts.push(address.as_str().to_string());
                }
                self.reply(250, "2.1.5 Ok").await?;
            }
            Ok(R::UnknownUser) => {
                self.reply(550, "5.1.1 Recipient address rejected: user unknown")
                    .await?
            }
            Ok(R::NotLocal) => self.reply(550, "5.7.1 Relay access denied").await?,
            Ok(R::OverQuota) => self.reply(452, "4.2.2 Mailbox full").await?,
            Ok(R::Disabled) => self.reply(550, "5.2.1 Mailbox disabled").await?,
            Ok(R::Rejected) => self.reply(550, "5.7.1 Recipient refused").await?,
            Ok(R::TemporaryFailure | R::Unspecified) | Err(_) => {
                if let Err(e) = checked {
                    tracing::warn!(error = %e, "recipient check failed");
                }
                self.reply(451, "4.3.0 Temporary lookup failure, try again later")
                    .await?
            }
        }
        Ok(())
    }

    async fn data(&mut self) -> Result<(), End> {
        let Some(tx) = &self.tx else {
            return self.error(503, "5.5.1 Need MAIL command").await;
        };
        if tx.bdat.is_some() {
            return self.error(503, "5.5.1 DATA after BDAT").await;
        }
        if tx.rcpts.is_empty() {
            return self.error(554, "5.5.1 No valid recipients").await;
        }
        self.reply(354, "End data with <CR><LF>.<CR><LF>").await?;
        self.conn.flush().await?;
        let outcome = self.read_data().await?;
        match outcome {
            Data::Complete(body) => self.finish(body).await?,
            Data::TooBig => {
                self.tx = None;
                self.reply(552, "5.3.4 Message size exceeds fixed maximum message size")
                    .await?
            }
            Data::BareNewline => {
                self.tx = None;
                self.reply(
                    550,
                    "5.5.2 Message rejected: bare CR or LF in message data (RFC 5321 2.3.8)",
                )
                .await?
            }
            Data::LineTooLong => {
                self.tx = None;
                let max = self.settings().max_data_line_length;
                self.reply(
                    554,
                    &format!("5.6.0 Message rejected: line longer than {max} octets"),
                )
                .await?
            }
        }
        Ok(())
    }

    /// Reads the message up to the end-of-data line. Only CRLF "." CRLF ends
    /// it (RFC 5321 4.1.1.4): a "." line after a bare LF, or any bare CR or
    /// LF, is not an ending, and such a message is refused once the real
    /// ending arrives, so nothing smuggled after a fake ending is ever read
    /// as commands. Memory is bounded by the maximum message size.
    async fn read_data(&mut self) -> Result<Data, End> {
        let max_line = self.settings().max_data_line_length;
        let max_size = self.settings().max_message_size as usize;
        let timeout = self.settings().data_timeout;
        let hint = self.tx.as_ref().map_or(0, |t| t.declared_size as usize);
        let mut reader = smtp_wire::DataReader::new(max_size, hint);
        loop {
            match self.conn.read_line(max_line, timeout).await {
                Ok(Line::Complete(l)) => {
                    if let Some(d) = reader.line(&l) {
                        return Ok(d);
                    }
                }
                Ok(Line::TooLong { crlf }) => reader.too_long_line(crlf),
                Ok(Line::Eof) => return Err(End::Closed),
                Err(ReadError::Timeout) => {
                    self.reply(421, "4.4.2 Timeout, closing connection").await?;
                    return Err(End::Closed);
                }
                Err(ReadError::Io(e)) => return Err(e.into()),
            }
        }
    }

    /// RFC 3030 BDAT: exactly `size` octets follow the command line.
    async fn bdat(&mut self, size: usize, last: bool) -> Result<(), End> {
        let max = self.settings().max_message_size as usize;
        let timeout = self.settings().data_timeout;
        let usable = matches!(&self.tx, Some(tx) if !tx.rcpts.is_empty());
        if usable
            && let Some(tx) = &mut self.tx
            && tx.bdat.is_none()
        {
            tx.bdat = Some(Ok(Vec::new()));
        }
        // Read (or discard) the chunk whatever happens: it is not commands.
        let mut left = size;
        while left > 0 {
            let keep = match &self.tx {
                Some(Envelope {
                    bdat: Some(Ok(buf)),
                    ..
                }) if usable => buf.len() + left <= max,
                _ => false,
            };
            if keep {
                let chunk = match self.conn.read_some(left, timeout).await {
                    Ok(c) if c.is_empty() => return Err(End::Closed),
                    Ok(c) => c,
                    Err(ReadError::Timeout) => {
                        self.reply(421, "4.4.2 Timeout, closing connection").await?;
                        return Err(End::Closed);
                    }
                    Err(ReadError::Io(e)) => return Err(e.into()),
                };
                left -= chunk.len();
                if let Some(Envelope {
                    bdat: Some(Ok(buf)),
                    ..
                }) = &mut self.tx
                {
                    buf.extend_from_slice(&chunk);
                }
            } else {
                if let Some(Envelope { bdat: Some(b), .. }) = &mut self.tx
                    && b.is_ok()
                {
                    *b = Err(Refusal::TooBig);
                }
                match self.conn.skip(left, timeout).await {
                    Ok(0) => return Err(End::Closed),
                    Ok(n) => left -= n,
                    Err(ReadError::Timeout) => {
                        self.reply(421, "4.4.2 Timeout, closing connection").await?;
                        return Err(End::Closed);
                    }
                    Err(ReadError::Io(e)) => return Err(e.into()),
                }
            }
        }
        if !usable {
            return match &self.tx {
                None => self.error(503, "5.5.1 Need MAIL command").await,
                Some(_) => self.error(554, "5.5.1 No valid recipients").await,
            };
        }
        let state = self.tx.as_mut().and_then(|t| t.bdat.take());
        match state {
            Some(Err(Refusal::TooBig)) => {
                self.tx = None;
                self.reply(552, "5.3.4 Message size exceeds fixed maximum message size")
                    .await?;
            }
            Some(Ok(buf)) if last => self.finish(buf).await?,
            Some(Ok(buf)) => {
                let n = buf.len();
                if let Some(tx) = &mut self.tx {
                    tx.bdat = Some(Ok(buf));
                }
                self.reply(250, &format!("2.0.0 {size} octets received ({n} in all)"))
                    .await?;
            }
            None => self.error(503, "5.5.1 Need MAIL command").await?,
        }
        Ok(())
    }

    /// Hands the complete message to the store and answers: SMTP one
    /// reply, LMTP one per recipient.
    async fn finish(&mut self, body: Vec<u8>) -> Result<(), End> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let protocol = if self.mode == Mode::Lmtp {
            "lmtp"
        } else {
            "smtp"
        };
        let id = deliver::delivery_id(protocol, &tx.from, &tx.rcpts, &body);
        let trace = self.trace_headers(&tx);
        let msg = Outgoing {
            id: &id,
            from: &tx.from,
            rcpts: &tx.rcpts,
            trace: Bytes::from(trace),
            body: Bytes::from(body),
            per_recipient_replies: self.mode == Mode::Lmtp,
        };
        // Deliveries to one mailbox go to one store replica (see
        // `StoreChannel::keyed`), so they share its group commits.
        let key = tx
            .rcpts
            .iter()
            .map(|r| r.to_ascii_lowercase())
            .min()
            .unwrap_or_default();
        let client = mailbox_api::delivery_client(
            self.ctx.channel.keyed(key.as_bytes()),
            self.ctx.auth.clone(),
        );
        let result = deliver::deliver(&client, &msg, self.settings().store_retry).await;
        service_kit::metrics::delivery(match &result {
            Ok(r)
                if r.results
                    .iter()
                    .any(|x| x.status() == pb::RecipientStatus::Accept) =>
            {
                "accepted"
            }
            Ok(_) => "rejected",
            Err(e)
                if e.code() == tonic::Code::OutOfRange
                    || e.code() == tonic::Code::InvalidArgument =>
            {
                "rejected"
            }
            Err(_) => "temporary",
        });
        let short = &id[..12];
        if let Err(e) = &result {
            tracing::warn!(code = ?e.code(), error = %e.message(), "delivery failed");
        }
        if self.mode == Mode::Lmtp {
            let mut out = String::new();
            for (i, rcpt) in tx.rcpts.iter().enumerate() {
                let line = match &result {
                    Ok(r) => match r.results.get(i).map(|x| x.status()) {
                        Some(pb::RecipientStatus::Accept) => {
                            format!("250 2.1.5 <{rcpt}> delivered as {short}")
                        }
                        Some(pb::RecipientStatus::OverQuota) => {
                            format!("452 4.2.2 <{rcpt}> Mailbox full")
                        }
                        Some(pb::RecipientStatus::UnknownUser | pb::RecipientStatus::NotLocal) => {
                            format!("550 5.1.1 <{rcpt}> User unknown")
                        }
                        Some(pb::RecipientStatus::Disabled) => {
                            format!("550 5.2.1 <{rcpt}> Mailbox disabled")
                        }
                        Some(pb::RecipientStatus::Rejected) => {
                            let reason = r.results.get(i).map_or("", |x| x.reason.as_str());
                            format!("550 5.7.1 <{rcpt}> {}", reply_text(reason))
                        }
                        _ => format!("451 4.3.0 <{rcpt}> Temporary failure"),
                    },
                    Err(e) => status_reply(e).to_string(),
                };
                out.push_str(&line);
                out.push_str("\r\n");
            }
            self.write(&out).await?;
            return Ok(());
        }
        let reply = match &result {
            Ok(r) => {
                let any = |s: pb::RecipientStatus| r.results.iter().any(|x| x.status() == s);
                if any(pb::RecipientStatus::Accept) {
                    format!("250 2.0.0 Ok: queued as {short}")
                } else if any(pb::RecipientStatus::OverQuota) {
                    "452 4.2.2 Mailbox full".to_string()
                } else if any(pb::RecipientStatus::TemporaryFailure) {
                    "451 4.3.0 Temporary failure, try again later".to_string()
                } else if let Some(x) = r
                    .results
                    .iter()
                    .find(|x| x.status() == pb::RecipientStatus::Rejected)
                {
                    format!("550 5.7.1 {}", reply_text(&x.reason))
                } else {
                    "550 5.1.1 No deliverable recipients".to_string()
                }
            }
            Err(e) => status_reply(e).to_string(),
        };
        self.write(&format!("{reply}\r\n")).await?;
        Ok(())
    }

    /// `Return-Path:` and `Received:` (RFC 5321 4.4), prepended to the
    /// stored message.
    fn trace_headers(&self, tx: &Envelope) -> Vec<u8> {
        let (helo, esmtp) = self
            .helo
            .clone()
            .unwrap_or_else(|| ("unknown".into(), false));
        let tls = self.conn.is_tls();
        let with = match (self.mode, esmtp, tls, tx.smtputf8) {
            (Mode::Lmtp, _, false, _) => "LMTP",
            (Mode::Lmtp, _, true, _) => "LMTPS",
            (_, true, true, true) => "UTF8SMTPS",
            (_, true, false, true) => "UTF8SMTP",
            (_, true, true, false) => "ESMTPS",
            (_, true, false, false) => "ESMTP",
            (_, false, _, _) => "SMTP",
        };
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default();
        let for_clause = match tx.rcpts.as_slice() {
            [one] => format!("\r\n\tfor <{one}>"),
            _ => String::new(),
        };
        format!(
            "Return-Path: <{}>\r\nReceived: from {} ([{}])\r\n\tby {} (smtp-ingest) with {} id {}{};\r\n\t{}\r\n",
            tx.from,
            helo,
            self.conn.peer.ip(),
            self.settings().hostname,
            with,
            self.id,
            for_clause,
            date
        )
        .into_bytes()
    }
}

/// The reply for a store failure.
fn status_reply(e: &tonic::Status) -> &'static str {
    match e.code() {
        tonic::Code::OutOfRange => "552 5.3.4 Message size exceeds fixed maximum message size",
        tonic::Code::InvalidArgument => "554 5.6.0 Message rejected by the store",
        _ => "451 4.3.0 Temporary failure, try again later",
    }
}

/// A Sieve reject's reason as one line of reply text: printable ASCII
/// (others become `?`), at most 400 characters.
fn reply_text(reason: &str) -> String {
    let s: String = reason
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else if c.is_whitespace() {
                ' '
            } else {
                '?'
            }
        })
        .take(400)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        "Message rejected".into()
    } else {
        s.to_string()
    }
}

/// HELO names go into Received lines: keep printable ASCII only.
fn sanitize_host(h: &str) -> String {
    let s: String = h
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if s.is_empty() { "unknown".into() } else { s }
}
