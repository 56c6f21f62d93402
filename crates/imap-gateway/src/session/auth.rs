//! Not authenticated: STARTTLS, LOGIN, AUTHENTICATE (PLAIN here;
//! SCRAM-SHA-256(-PLUS), OAUTHBEARER and XOAUTH2 through
//! `mailbox_api::sasl`).

use mailbox_api::sasl::{self, Mechanism, Outcome};

use super::*;

/// One SASL round over IMAP (RFC 9051 6.2.2): `+ <base64>`, then the
/// client's line.
struct ImapSasl<'a>(&'a mut Session);

impl sasl::SaslIo for ImapSasl<'_> {
    type Error = End;
    async fn challenge(&mut self, data: &[u8]) -> Result<String, End> {
        let s = &mut *self.0;
        s.push(&format!(
            "+ {}",
            base64::engine::general_purpose::STANDARD.encode(data)
        ));
        if s.read_message().await?.is_none() {
            return Err(End::Closed);
        }
        let line = String::from_utf8_lossy(s.frag.message_bytes()).into_owned();
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

impl Session {
    /// UNAUTHENTICATE (RFC 8437 3): back to the not-authenticated state,
    /// as if just connected (TLS stays): the store session ends, the
    /// mailbox is closed without expunging, and every ENABLEd extension
    /// and saved result is forgotten.
    pub(super) async fn unauthenticate(&mut self) {
        // The view (and its lease of this session's store client to the
        // shared watcher) goes before the token does.
        self.view = None;
        if let Some(mut c) = self.client.take() {
            let _ = c.logout(pb::LogoutRequest {}).await;
        }
        self.user.clear();
        self.contexts.clear();
        self.saved.clear();
        self.search_return = None;
        self.utf8 = false;
        self.rev2 = false;
        self.condstore = false;
        self.qresync = false;
        self.added_here = (0, Vec::new());
        self.appended_upto = (0, 0);
        self.notify = None;
    }

    pub(super) async fn starttls(&mut self, tag: &str) -> R {
        let Some(acceptor) = self.ctx.tls.as_ref().map(|t| t.acceptor()) else {
            self.push(&format!("{tag} BAD STARTTLS not available"));
            return Ok(());
        };
        if self.conn.is_tls() {
            self.push(&format!("{tag} BAD Already using TLS"));
            return Ok(());
        }
        if self.deflate.is_some() {
            // TLS cannot start under a DEFLATE stream (RFC 4978 4).
            self.push(&format!("{tag} BAD STARTTLS after COMPRESS"));
            return Ok(());
        }
        self.push(&format!("{tag} OK Begin TLS negotiation now"));
        self.flush().await?;
        // Anything the client pipelined after STARTTLS was sent in
        // plaintext: it is dropped, never executed inside TLS.
        self.frag = Fragmentizer::new(
            self.settings()
                .max_append
                .saturating_add(self.settings().max_line),
        );
        if self.conn.buffered() > 0 {
            let _ = self
                .conn
                .read_some(usize::MAX, Duration::from_secs(1))
                .await;
        }
        self.conn
            .start_tls(&acceptor, TLS_HANDSHAKE_TIMEOUT)
            .await?;
        Ok(())
    }

    pub(super) async fn login(&mut self, user: &str, password: &str) -> Done {
        let mut anon = mailbox_api::mailbox_client(self.store.clone(), self.ctx.auth.clone());
        let r = anon
            .authenticate(pb::AuthenticateRequest {
                username: user.to_string(),
                password: password.to_string(),
                client_ip: self.conn.peer.ip().to_string(),
                protocol: "imap".into(),
            })
            .await;
        match r {
            Ok(r) => {
                let r = r.into_inner();
                let Ok(auth) = self.ctx.auth.with_session(&r.session_token) else {
                    return Done::no("[UNAVAILABLE] Bad session token");
                };
                self.client = Some(mailbox_api::mailbox_client(self.store.clone(), auth));
                self.user = r.account;
                Done::ok(format!("[CAPABILITY {}] Logged in", self.capabilities()))
            }
            Err(s) if s.code() == Code::InvalidArgument => {
                Done::no("[AUTHENTICATIONFAILED] Authentication failed")
            }
            Err(s) => store_no(&s),
        }
    }

    pub(super) async fn authenticate(
        &mut self,
        mech: &AuthMechanism<'_>,
        ir: Option<Vec<u8>>,
    ) -> Result<Done, End> {
        if !matches!(mech, AuthMechanism::Plain) {
            return match Mechanism::from_name(mech.as_ref()) {
                Some(m) => self.authenticate_sasl(m, ir).await,
                None => Ok(Done::no("[CANNOT] Unsupported mechanism")),
            };
        }
        if !self.plaintext_ok() {
            return Ok(Done::no("[PRIVACYREQUIRED] AUTHENTICATE PLAIN needs TLS"));
        }
        let response = match ir {
            Some(r) => r,
            None => {
                self.push("+ ");
                if self.read_message().await?.is_none() {
                    return Err(End::Closed);
                }
                let line = self.frag.message_bytes().to_vec();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line == "*" {
                    return Ok(Done::bad("Authentication cancelled"));
                }
                match base64::engine::general_purpose::STANDARD.decode(line.as_bytes()) {
                    Ok(d) => d,
                    Err(_) => return Ok(Done::bad("Invalid base64")),
                }
            }
        };
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pw), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Done::no("[AUTHENTICATIONFAILED] Malformed PLAIN response"));
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(authc) {
            return Ok(Done::no(
                "[AUTHORIZATIONFAILED] Authorization identity not permitted",
            ));
        }
        let (user, pw) = (
            String::from_utf8_lossy(authc).into_owned(),
            String::from_utf8_lossy(pw).into_owned(),
        );
        Ok(self.login(&user, &pw).await)
    }

    /// AUTHENTICATE with a mechanism beyond PLAIN. SCRAM never sends the
    /// password and may run without TLS; a bearer token is a secret like
    /// a password and needs TLS outside trusted networks. -PLUS only on
    /// TLS 1.3 (RFC 9266 3). A refused token gets the RFC 7628 3.2.2
    /// error challenge before the NO.
    async fn authenticate_sasl(
        &mut self,
        mech: Mechanism,
        ir: Option<Vec<u8>>,
    ) -> Result<Done, End> {
        if mech.sends_secret() && !self.plaintext_ok() {
            return Ok(Done::no(format!(
                "[PRIVACYREQUIRED] AUTHENTICATE {} needs TLS",
                mech.name()
            )));
        }
        let tls_exporter = self.conn.tls_exporter();
        if mech == Mechanism::ScramSha256Plus && tls_exporter.is_none() {
            return Ok(Done::no(
                "[CANNOT] SCRAM-SHA-256-PLUS needs a TLS 1.3 connection",
            ));
        }
        let ctx = sasl::Context {
            channel: self.store.clone(),
            auth: self.ctx.auth.clone(),
            client_ip: self.conn.peer.ip().to_string(),
            protocol: "imap",
            tls_exporter,
        };
        let outcome = sasl::run(mech, ir, &mut ImapSasl(self), &ctx).await?;
        Ok(match outcome {
            Outcome::LoggedIn {
                session_token,
                account,
            } => {
                let Ok(auth) = self.ctx.auth.with_session(&session_token) else {
                    return Ok(Done::no("[UNAVAILABLE] Bad session token"));
                };
                self.client = Some(mailbox_api::mailbox_client(self.store.clone(), auth));
                self.user = account;
                Done::ok(format!("[CAPABILITY {}] Logged in", self.capabilities()))
            }
            Outcome::Cancelled => Done::bad("Authentication cancelled"),
            Outcome::BadBase64 => Done::bad("Invalid base64"),
            Outcome::Failed(why) => {
                tracing::info!(mechanism = mech.name(), reason = %why, "authentication failed");
                Done::no("[AUTHENTICATIONFAILED] Authentication failed")
            }
            Outcome::Store(s) => store_no(&s),
        })
    }
}
