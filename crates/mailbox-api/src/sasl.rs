//! The gateways' side of the SASL mechanisms beyond PLAIN, shared by IMAP
//! AUTHENTICATE and POP3 AUTH (RFC 5034):
//!
//! - SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) with the
//!   `tls-exporter` channel binding (RFC 9266). The gateway parses the
//!   messages, makes the server nonce, checks the channel binding against
//!   its own TLS connection and builds the AuthMessage; the store keeps the
//!   keys (`ScramBegin` gives salt and iterations, `ScramFinish` checks
//!   the ClientProof and returns the ServerSignature with a session).
//! - OAUTHBEARER (RFC 7628) and XOAUTH2: the bearer token goes to the
//!   store's `AuthenticateToken`; a refusal follows RFC 7628 3.2.2 (the
//!   error JSON as a challenge, the client's `%x01` answer, then failure).
//!
//! The protocol framing (the `+ ` continuation, base64, `*` to cancel)
//! is the caller's [`SaslIo`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tonic::Code;

use crate::{MailboxClient, pb};

impl Context {
    fn client(&self) -> MailboxClient {
        crate::mailbox_client(self.channel.clone(), self.auth.clone())
    }
}

/// The mechanisms this module runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha256,
    ScramSha256Plus,
    OAuthBearer,
    XOAuth2,
}

impl Mechanism {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Self::ScramSha256,
            "SCRAM-SHA-256-PLUS" => Self::ScramSha256Plus,
            "OAUTHBEARER" => Self::OAuthBearer,
            "XOAUTH2" => Self::XOAuth2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Self::OAuthBearer => "OAUTHBEARER",
            Self::XOAuth2 => "XOAUTH2",
        }
    }

    /// Whether the mechanism needs TLS outside trusted networks, as PLAIN
    /// does: a bearer token can be replayed, and a SCRAM exchange seen in
    /// the clear can be attacked offline (salt, iterations, proof) or
    /// relayed by a man in the middle. SCRAM-SHA-256-PLUS needs TLS 1.3
    /// anyway.
    pub fn sends_secret(self) -> bool {
        matches!(self, Self::OAuthBearer | Self::XOAuth2 | Self::ScramSha256)
    }
}

/// The label of the RFC 9266 channel binding (TLS 1.3 keying material
/// exporter, 32 bytes, no context).
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

// ------------------------------------------------------------------ SCRAM

/// The GS2 channel-binding flag (RFC 5802 7, `gs2-cbind-flag`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CbFlag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    ClientSupports,
    /// `p=name`: the client binds to this channel binding type.
    Binding(String),
}

/// A parsed client-first-message (RFC 5802 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFirst {
    /// `gs2-header` as sent (flag, authzid, and the trailing comma).
    pub gs2_header: String,
    pub cb: CbFlag,
    pub authzid: Option<String>,
    /// The user name with `=2C` / `=3D` decoded.
    pub username: String,
    pub nonce: String,
    /// `client-first-message-bare` as sent.
    pub bare: String,
}

/// A parsed client-final-message (RFC 5802 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFinal {
    /// `c=`, decoded: the gs2-header followed by the channel binding data.
    pub channel_binding: Vec<u8>,
    pub nonce: String,
    pub proof: Vec<u8>,
    /// `client-final-message-without-proof` as sent.
    pub without_proof: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed SCRAM message: {0}")]
pub struct Malformed(pub &'static str);

/// RFC 5802 7 `saslname`: `=2C` is `,`, `=3D` is `=`, any other `=` is
/// an error; no NUL.
fn decode_saslname(s: &str) -> Result<String, Malformed> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i..i + 3)
            .ok_or(Malformed("bad = escape in a name"))?;
        out.push(match esc {
            "=2C" | "=2c" => ',',
            "=3D" | "=3d" => '=',
            _ => return Err(Malformed("bad = escape in a name")),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() || out.contains('\0') {
        return Err(Malformed("empty name"));
    }
    Ok(out)
}

/// RFC 5802 7 `printable` (a nonce): ASCII 0x21..0x7E except `,`.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, Malformed> {
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed("not UTF-8"))?;
    let (flag, rest) = msg.split_once(',').ok_or(Malformed("no gs2 header"))?;
    let cb = match flag {
        "n" => CbFlag::No,
        "y" => CbFlag::ClientSupports,
        f if f.starts_with("p=") && f.len() > 2 => {
            let name = &f[2..];
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            {
                return Err(Malformed("bad channel binding name"));
            }
            CbFlag::Binding(name.to_string())
        }
        _ => return Err(Malformed("bad channel binding flag")),
    };
    let (authz, bare) = rest.split_once(',').ok_or(Malformed("no gs2 header"))?;
    let authzid = match authz {
        "" => None,
        a if a.starts_with("a=") => Some(decode_saslname(&a[2..])?),
        _ => return Err(Malformed("bad authzid")),
    };
    let gs2_header = msg[..msg.len() - bare.len()].to_string();
    let mut attrs = bare.split(',');
    let user = attrs.next().unwrap_or_default();
    if user.starts_with("m=") {
        // RFC 5802 5.1: mandatory extensions we do not know fail.
        return Err(Malformed("unsupported mandatory extension"));
    }
    let username = decode_saslname(user.strip_prefix("n=").ok_or(Malformed("no user name"))?)?;
    let nonce = attrs
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or(Malformed("no client nonce"))?
        .to_string();
    // Optional extensions after the nonce are ignored (RFC 5802 5.1).
    Ok(ClientFirst {
        gs2_header,
        cb,
        authzid,
        username,
        nonce,
        bare: bare.to_string(),
    })
}

/// server-first-message: `r=<client nonce><server nonce>,s=<salt>,i=<n>`.
pub fn server_first(
    client_nonce: &str,
    server_nonce: &str,
    salt: &[u8],
    iterations: u32,
) -> String {
    format!(
        "r={client_nonce}{server_nonce},s={},i={iterations}",
        B64.encode(salt)
    )
}

pub fn parse_client_final(msg: &[u8]) -> Result<ClientFinal, Malformed> {
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed("not UTF-8"))?;
    let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(Malformed("no proof"))?;
    let proof = B64
        .decode(proof)
        .map_err(|_| Malformed("proof is not base64"))?;
    let mut attrs = without_proof.split(',');
    let channel_binding = attrs
        .next()
        .and_then(|c| c.strip_prefix("c="))
        .ok_or(Malformed("no channel binding"))?;
    let channel_binding = B64
        .decode(channel_binding)
        .map_err(|_| Malformed("channel binding is not base64"))?;
    let nonce = attrs
        .next()
        .and_then(|r| r.strip_prefix("r="))
        .filter(|n| valid_nonce(n))
        .ok_or(Malformed("no nonce"))?
        .to_string();
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof: without_proof.to_string(),
    })
}

/// server-final-message on success: `v=<ServerSignature>`.
pub fn server_final(signature: &[u8]) -> String {
    format!("v={}", B64.encode(signature))
}

/// A fresh server nonce: 18 random bytes, base64 (printable, no comma).
pub fn server_nonce() -> String {
    let mut raw = [0u8; 18];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    B64.encode(raw)
}

// ------------------------------------------------------- OAUTHBEARER / XOAUTH2

/// A bearer token and the identity the client named with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bearer {
    pub authzid: Option<String>,
    pub token: String,
}

/// The `auth=` value of a kvpair list: `Bearer <token>` (scheme in any
/// case, RFC 6750 2.1).
fn bearer_of<'a>(pairs: impl Iterator<Item = &'a str>) -> Result<String, Malformed> {
    for p in pairs {
        if let Some(v) = p.strip_prefix("auth=") {
            let (scheme, token) = v.split_once(' ').ok_or(Malformed("bad auth value"))?;
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(Malformed("not a bearer token"));
            }
            return Ok(token.trim().to_string());
        }
    }
    Err(Malformed("no auth value"))
}

/// RFC 7628 3.1: `gs2-header kvsep *(kvpair) kvsep`, e.g.
/// `n,a=user@example.com,\x01host=...\x01auth=Bearer <token>\x01\x01`.
pub fn parse_oauthbearer(msg: &[u8]) -> Result<Bearer, Malformed> {
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed("not UTF-8"))?;
    let (flag, rest) = msg.split_once(',').ok_or(Malformed("no gs2 header"))?;
    if flag != "n" && flag != "y" {
        // No channel binding is defined for OAUTHBEARER.
        return Err(Malformed("channel binding not supported"));
    }
    let (authz, rest) = rest.split_once(',').ok_or(Malformed("no gs2 header"))?;
    let authzid = match authz {
        "" => None,
        a if a.starts_with("a=") => Some(decode_saslname(&a[2..])?),
        _ => return Err(Malformed("bad authzid")),
    };
    let body = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix("\x01\x01"))
        .ok_or(Malformed("bad kvpair framing"))?;
    Ok(Bearer {
        authzid,
        token: bearer_of(body.split('\x01'))?,
    })
}

/// XOAUTH2 (Google's): `user=<name>\x01auth=Bearer <token>\x01\x01`.
pub fn parse_xoauth2(msg: &[u8]) -> Result<Bearer, Malformed> {
    let msg = std::str::from_utf8(msg).map_err(|_| Malformed("not UTF-8"))?;
    let body = msg
        .strip_suffix("\x01\x01")
        .ok_or(Malformed("bad kvpair framing"))?;
    let user = body
        .split('\x01')
        .find_map(|p| p.strip_prefix("user="))
        .filter(|u| !u.is_empty())
        .ok_or(Malformed("no user"))?;
    Ok(Bearer {
        authzid: Some(user.to_string()),
        token: bearer_of(body.split('\x01'))?,
    })
}

// ------------------------------------------------------------------ driver

/// The protocol's framing of one SASL round: send `data` as a
/// continuation (`+ <base64>`), return the client's answer line as sent
/// (base64 text, or `*`), without its line ending.
#[allow(async_fn_in_trait)]
pub trait SaslIo {
    type Error;
    async fn challenge(&mut self, data: &[u8]) -> Result<String, Self::Error>;
}

/// What an exchange came to.
#[derive(Debug)]
pub enum Outcome {
    LoggedIn {
        session_token: String,
        account: String,
    },
    /// The client answered `*` (IMAP BAD, POP3 -ERR).
    Cancelled,
    /// A line that is not base64 (IMAP BAD, POP3 -ERR).
    BadBase64,
    /// Wrong credentials, a refused token, a malformed exchange or
    /// channel binding: the text says which (for the log and the reply).
    Failed(String),
    /// The store answered with an error other than "wrong credentials"
    /// (throttled, unavailable): the gateway maps it as it does for PLAIN.
    Store(tonic::Status),
}

/// What the exchange needs from the session.
pub struct Context {
    /// The store, and the calls' credentials without a session (the
    /// service token only).
    pub channel: crate::StoreChannel,
    pub auth: crate::CallAuth,
    pub client_ip: String,
    pub protocol: &'static str,
    /// RFC 9266: the TLS 1.3 exporter value of this connection (none on
    /// plaintext or TLS 1.2, where -PLUS is not offered).
    pub tls_exporter: Option<[u8; 32]>,
}

/// One client message: the SASL-IR initial response if there is one,
/// else the answer to `challenge`.
async fn answer<I: SaslIo>(
    io: &mut I,
    challenge: &[u8],
    initial: &mut Option<Vec<u8>>,
) -> Result<Result<Vec<u8>, Outcome>, I::Error> {
    if let Some(i) = initial.take() {
        return Ok(Ok(i));
    }
    let line = io.challenge(challenge).await?;
    let line = line.trim();
    if line == "*" {
        return Ok(Err(Outcome::Cancelled));
    }
    Ok(B64.decode(line).map_err(|_| Outcome::BadBase64))
}

fn failed(m: impl std::fmt::Display) -> Outcome {
    Outcome::Failed(m.to_string())
}

fn store_outcome(s: tonic::Status) -> Outcome {
    if matches!(s.code(), Code::Unauthenticated | Code::InvalidArgument) {
        failed("authentication failed")
    } else {
        Outcome::Store(s)
    }
}

/// Runs one exchange of `mech` to its end.
pub async fn run<I: SaslIo>(
    mech: Mechanism,
    initial: Option<Vec<u8>>,
    io: &mut I,
    ctx: &Context,
) -> Result<Outcome, I::Error> {
    match mech {
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => scram(mech, initial, io, ctx).await,
        Mechanism::OAuthBearer | Mechanism::XOAuth2 => bearer(mech, initial, io, ctx).await,
    }
}

async fn scram<I: SaslIo>(
    mech: Mechanism,
    mut initial: Option<Vec<u8>>,
    io: &mut I,
    ctx: &Context,
) -> Result<Outcome, I::Error> {
    let first = match answer(io, b"", &mut initial).await? {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    let first = match parse_client_first(&first) {
        Ok(f) => f,
        Err(e) => return Ok(failed(e)),
    };
    // RFC 5802 6 and RFC 9266: which binding the client may ask for.
    let binding: Vec<u8> = match (&first.cb, mech) {
        (CbFlag::Binding(name), Mechanism::ScramSha256Plus) => {
            if name != "tls-exporter" {
                return Ok(failed("unsupported channel binding type"));
            }
            match ctx.tls_exporter {
                Some(e) => e.to_vec(),
                None => return Ok(failed("channel binding needs TLS 1.3")),
            }
        }
        (_, Mechanism::ScramSha256Plus) => {
            return Ok(failed("SCRAM-SHA-256-PLUS needs channel binding"));
        }
        (CbFlag::Binding(_), _) => {
            return Ok(failed("channel binding asked for without -PLUS"));
        }
        // The client could bind but thinks we cannot, while we offer
        // -PLUS here: a downgrade (RFC 5802 6).
        (CbFlag::ClientSupports, _) if ctx.tls_exporter.is_some() => {
            return Ok(failed("channel binding downgrade"));
        }
        _ => Vec::new(),
    };
    if let Some(a) = &first.authzid
        && !a.eq_ignore_ascii_case(&first.username)
    {
        return Ok(failed("authorization identity not permitted"));
    }
    let begun = ctx
        .client()
        .scram_begin(pb::ScramBeginRequest {
            username: first.username.clone(),
            client_ip: ctx.client_ip.clone(),
            protocol: ctx.protocol.into(),
        })
        .await;
    let begun = match begun {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(store_outcome(s)),
    };
    let nonce = server_nonce();
    let server_first = server_first(&first.nonce, &nonce, &begun.salt, begun.iterations);
    let fin = match answer(io, server_first.as_bytes(), &mut None).await? {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    let fin = match parse_client_final(&fin) {
        Ok(f) => f,
        Err(e) => return Ok(failed(e)),
    };
    if fin.nonce != format!("{}{nonce}", first.nonce) {
        return Ok(failed("nonce mismatch"));
    }
    let mut expected = first.gs2_header.as_bytes().to_vec();
    expected.extend_from_slice(&binding);
    if fin.channel_binding != expected {
        return Ok(failed("channel binding mismatch"));
    }
    let auth_message = format!("{},{server_first},{}", first.bare, fin.without_proof);
    let done = ctx
        .client()
        .scram_finish(pb::ScramFinishRequest {
            username: first.username.clone(),
            auth_message: auth_message.into_bytes(),
            client_proof: fin.proof,
            client_ip: ctx.client_ip.clone(),
            protocol: ctx.protocol.into(),
        })
        .await;
    let done = match done {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(store_outcome(s)),
    };
    // RFC 5802 5: the server-final-message as the last challenge; the
    // client answers with an empty line once it has checked it.
    let last = io
        .challenge(server_final(&done.server_signature).as_bytes())
        .await?;
    // Anything but the empty answer (RFC 5802 5) leaves the client not
    // logged in, and the session made for it ends.
    if !last.trim().is_empty() {
        if let Ok(auth) = ctx.auth.with_session(&done.session_token) {
            let _ = crate::mailbox_client(ctx.channel.clone(), auth)
                .logout(pb::LogoutRequest {})
                .await;
        }
        return Ok(if last.trim() == "*" {
            Outcome::Cancelled
        } else {
            Outcome::Failed("the client did not accept the server's signature".into())
        });
    }
    Ok(Outcome::LoggedIn {
        session_token: done.session_token,
        account: done.account,
    })
}

async fn bearer<I: SaslIo>(
    mech: Mechanism,
    mut initial: Option<Vec<u8>>,
    io: &mut I,
    ctx: &Context,
) -> Result<Outcome, I::Error> {
    let msg = match answer(io, b"", &mut initial).await? {
        Ok(m) => m,
        Err(o) => return Ok(o),
    };
    let parsed = if mech == Mechanism::OAuthBearer {
        parse_oauthbearer(&msg)
    } else {
        parse_xoauth2(&msg)
    };
    let b = match parsed {
        Ok(b) => b,
        Err(e) => return Ok(failed(e)),
    };
    let r = ctx
        .client()
        .authenticate_token(pb::AuthenticateTokenRequest {
            token: b.token,
            authzid: b.authzid.unwrap_or_default(),
            client_ip: ctx.client_ip.clone(),
            protocol: ctx.protocol.into(),
        })
        .await;
    let r = match r {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(store_outcome(s)),
    };
    if r.session_token.is_empty() {
        // RFC 7628 3.2.2: the error as a challenge; the client answers
        // %x01 (XOAUTH2 clients an empty line), then the failure.
        let error = if r.error_json.is_empty() {
            r#"{"status":"invalid_token"}"#.to_string()
        } else {
            r.error_json
        };
        let _ = io.challenge(error.as_bytes()).await?;
        return Ok(failed("token refused"));
    }
    Ok(Outcome::LoggedIn {
        session_token: r.session_token,
        account: r.account,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 7677 3: the example's client messages parse to their parts and
    /// the AuthMessage built from them is the one the example signs.
    #[test]
    fn rfc7677_section3_messages() {
        let f = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(f.gs2_header, "n,,");
        assert_eq!(f.cb, CbFlag::No);
        assert_eq!(f.authzid, None);
        assert_eq!(f.username, "user");
        assert_eq!(f.nonce, "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(f.bare, "n=user,r=rOprNGfwEbeRWgbNEkqO");
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let sf = server_first(&f.nonce, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &salt, 4096);
        assert_eq!(
            sf,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let fin = parse_client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        )
        .unwrap();
        assert_eq!(fin.channel_binding, b"n,,");
        assert_eq!(
            fin.nonce,
            "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        assert_eq!(
            B64.encode(&fin.proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            format!("{},{sf},{}", f.bare, fin.without_proof),
            "n=user,r=rOprNGfwEbeRWgbNEkqO,\
             r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
             c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        );
        let sig = B64
            .decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            server_final(&sig),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// RFC 5802 7: gs2 header forms, saslname escapes, m= refused.
    #[test]
    fn rfc5802_section7_client_first_forms() {
        let f = parse_client_first(b"p=tls-exporter,a=a=3Db=2Cc,n=a=3Db=2Cc,r=abc,x=ext").unwrap();
        assert_eq!(f.cb, CbFlag::Binding("tls-exporter".into()));
        assert_eq!(f.authzid.as_deref(), Some("a=b,c"));
        assert_eq!(f.username, "a=b,c");
        assert_eq!(f.gs2_header, "p=tls-exporter,a=a=3Db=2Cc,");
        assert_eq!(
            parse_client_first(b"y,,n=u,r=x").unwrap().cb,
            CbFlag::ClientSupports
        );
        for bad in [
            &b""[..],
            b"n",
            b"x,,n=u,r=x",
            b"n,,m=ext,n=u,r=x",
            b"n,,n=u",
            b"n,,n=,r=x",
            b"n,,n=a=ZZ,r=x",
            b"n,,n=u,r=",
            b"n,,n=u,r=a\x7fb",
            b"n,b=x,n=u,r=x",
            b"\xff,,n=u,r=x",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &b"c=biws,r=x"[..],
            b"c=!!,r=x,p=AA==",
            b"r=x,p=AA==",
            b"c=biws,p=AA==",
        ] {
            assert!(parse_client_final(bad).is_err(), "{bad:?}");
        }
    }

    /// RFC 7628 3.1 (and its 4.1 example) and Google's XOAUTH2 format.
    #[test]
    fn rfc7628_section3_1_and_xoauth2() {
        let b = parse_oauthbearer(
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01\
              auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01",
        )
        .unwrap();
        assert_eq!(b.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(b.token, "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==");
        let b = parse_oauthbearer(b"n,,\x01auth=bearer tok\x01\x01").unwrap();
        assert_eq!((b.authzid, b.token.as_str()), (None, "tok"));
        for bad in [
            &b"n,,auth=Bearer x\x01\x01"[..],
            b"n,,\x01auth=Bearer x\x01",
            b"n,,\x01auth=Basic x\x01\x01",
            b"n,,\x01host=x\x01\x01",
            b"p=tls-exporter,,\x01auth=Bearer x\x01\x01",
            b"\x01",
        ] {
            assert!(parse_oauthbearer(bad).is_err(), "{bad:?}");
        }
        let b = parse_xoauth2(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4\x01\x01")
            .unwrap();
        assert_eq!(b.authzid.as_deref(), Some("someuser@example.com"));
        assert_eq!(b.token, "ya29.vF9dft4");
        assert!(parse_xoauth2(b"auth=Bearer x\x01\x01").is_err());
        assert!(parse_xoauth2(b"user=u\x01auth=Bearer x").is_err());
    }

    #[test]
    fn server_nonce_is_printable() {
        let n = server_nonce();
        assert!(valid_nonce(&n) && n.len() >= 24, "{n}");
        assert_ne!(n, server_nonce());
    }
}
