//! OAUTHBEARER (RFC 7628) / XOAUTH2 bearer tokens: JWTs from a domain's
//! OpenID Connect issuer, checked against the issuer's JWKS (signature,
//! `iss`, `aud`, `exp`/`nbf`) and the claim that names the mailbox.
//!
//! The JWKS is fetched by the store over HTTPS (plain HTTP only from a
//! loopback host), cached per URL for [`JWKS_TTL`], and fetched again
//! early (at most every [`REFETCH_MIN`]) when a token names a key the
//! cached set lacks: that is how an issuer's key rotation is picked up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// How long a fetched key set is used.
pub const JWKS_TTL: Duration = Duration::from_secs(300);
/// The shortest time between two fetches of one URL on unknown keys.
pub const REFETCH_MIN: Duration = Duration::from_secs(30);
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// Longest JWKS document read.
const MAX_JWKS: usize = 1024 * 1024;
/// A JWKS fetch, connection to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The claim naming the mailbox when the domain names none.
pub const DEFAULT_CLAIM: &str = "email";

/// A domain's issuer, as kept in `domain_oidc`.
#[derive(Clone, Debug)]
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub claim: String,
}

/// Why a token was refused; becomes the RFC 7628 3.2.2 error JSON.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The issuer's keys could not be had (a temporary failure).
    #[error("JWKS unavailable: {0}")]
    Unavailable(String),
}

impl Refused {
    /// RFC 7628 3.2.2: `status` is the only member we send; the reason
    /// stays in the store's log.
    pub fn error_json(&self) -> String {
        serde_json::json!({ "status": "invalid_token" }).to_string()
    }
}

/// Checks a JWT URL before it is kept: https, or http to a loopback host.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("JWKS URL: {e}"))?;
    let host = uri.host().ok_or("JWKS URL without a host")?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err("JWKS URL: plain http only to a loopback host; use https".into()),
        _ => Err("JWKS URL must be https://".into()),
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The claims of a JWT, not verified: only to find which domain's issuer
/// to check it against.
pub fn unverified_claims(token: &str) -> Result<serde_json::Value, Refused> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| Refused::Invalid("not a JWT".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| Refused::Invalid("payload is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| Refused::Invalid("payload is not JSON".into()))
}

struct Cached {
    keys: Arc<JwkSet>,
    fetched: Instant,
}

/// JWKS documents by URL, shared by the store's logins.
#[derive(Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<String, Cached>>,
    /// When a fetch of a URL last failed: a failing issuer is asked at
    /// most every REFETCH_MIN, however many tokens arrive meanwhile.
    failed: Mutex<HashMap<String, Instant>>,
}

impl JwksCache {
    /// Verifies `token` against `issuer` and returns its claims.
    pub async fn verify(&self, token: &str, issuer: &Issuer) -> Result<serde_json::Value, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused::Invalid(format!("header: {e}")))?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return Err(Refused::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let key = self
            .key(&issuer.jwks_url, header.kid.as_deref(), header.alg)
            .await?;
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&issuer.issuer]);
        v.set_audience(&[&issuer.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| Refused::Invalid(e.to_string()))
    }

    /// The key a token names (by `kid`; without one, the set's only key
    /// of the token's algorithm).
    async fn key(
        &self,
        url: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, Refused> {
        let (cached, fresh) = {
            let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
            match sets.get(url) {
                Some(c) => (
                    Some((c.keys.clone(), c.fetched.elapsed())),
                    c.fetched.elapsed() < JWKS_TTL,
                ),
                None => (None, false),
            }
        };
        if let Some((keys, age)) = &cached {
            match pick(keys, kid, alg) {
                Some(k) if fresh => return k,
                // Unknown key: fetched again, but not more than every
                // REFETCH_MIN (a flood of forged kids costs no fetches).
                None if fresh && *age < REFETCH_MIN => {
                    return Err(Refused::Invalid("unknown signing key".into()));
                }
                _ => {}
            }
        }
        // The issuer is down: a set not older than twice its life still
        // serves (its age kept, so it does expire), and the issuer is not
        // asked again before REFETCH_MIN.
        let stale = |e: String| match &cached {
            Some((keys, age)) if *age < 2 * JWKS_TTL => pick(keys, kid, alg)
                .unwrap_or_else(|| Err(Refused::Invalid("unknown signing key".into()))),
            _ => Err(Refused::Unavailable(e)),
        };
        let recently_failed = self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .is_some_and(|t| t.elapsed() < REFETCH_MIN);
        if recently_failed {
            return stale("the issuer's key set could not be fetched".into());
        }
        let keys = match fetch_jwks(url).await {
            Ok(k) => {
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(url);
                Arc::new(k)
            }
            Err(e) => {
                tracing::warn!(url, error = %e, "JWKS fetch failed");
                self.failed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(url.to_string(), Instant::now());
                return stale(e);
            }
        };
        self.sets.lock().unwrap_or_else(|e| e.into_inner()).insert(
            url.to_string(),
            Cached {
                keys: keys.clone(),
                fetched: Instant::now(),
            },
        );
        pick(&keys, kid, alg).unwrap_or_else(|| Err(Refused::Invalid("unknown signing key".into())))
    }
}

fn pick(keys: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, Refused>> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None => {
            let mut fits = keys.keys.iter().filter(|k| {
                k.common
                    .key_algorithm
                    .is_none_or(|a| format!("{a:?}") == format!("{alg:?}"))
            });
            let one = fits.next()?;
            if fits.next().is_some() {
                return Some(Err(Refused::Invalid(
                    "token names no key and the issuer has several".into(),
                )));
            }
            one
        }
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|e| Refused::Invalid(format!("JWK: {e}"))))
}

/// GET of a JWKS document (HTTP/1.1; TLS with the web PKI roots).
async fn fetch_jwks(url: &str) -> Result<JwkSet, String> {
    tokio::time::timeout(FETCH_TIMEOUT, fetch_jwks_now(url))
        .await
        .map_err(|_| "timed out".to_string())?
}

async fn fetch_jwks_now(url: &str) -> Result<JwkSet, String> {
    check_jwks_url(url)?;
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().unwrap_or_default().to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::net::TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or(host.clone());
    let body = if https {
        let name = rustls_pki_types::ServerName::try_from(bare.clone())
            .map_err(|e| format!("server name {bare}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {host}: {e}"))?;
        get(hyper_util::rt::TokioIo::new(tls), &path, &authority).await?
    } else {
        get(hyper_util::rt::TokioIo::new(tcp), &path, &authority).await?
    };
    serde_json::from_slice(&body).map_err(|e| format!("JWKS is not a JWK set: {e}"))
}

async fn get<I>(io: I, path: &str, authority: &str) -> Result<Bytes, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "mailbox-store")
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP status {}", resp.status()));
    }
    Ok(Limited::new(resp.into_body(), MAX_JWKS)
        .collect()
        .await
        .map_err(|e| format!("reading the JWKS: {e}"))?
        .to_bytes())
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn jwks_url_rules() {
        assert!(check_jwks_url("https://idp.example.com/keys").is_ok());
        assert!(check_jwks_url("http://127.0.0.1:8080/keys").is_ok());
        assert!(check_jwks_url("http://[::1]:8080/keys").is_ok());
        assert!(check_jwks_url("http://localhost/keys").is_ok());
        assert!(check_jwks_url("http://idp.example.com/keys").is_err());
        assert!(check_jwks_url("ftp://idp.example.com/keys").is_err());
        assert!(check_jwks_url("not a url").is_err());
    }

    #[test]
    fn claims_read_without_verifying() {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let t = format!(
            "{}.{}.sig",
            b.encode(br#"{"alg":"ES256"}"#),
            b.encode(br#"{"email":"a@x.org"}"#)
        );
        assert_eq!(unverified_claims(&t).unwrap()["email"], "a@x.org");
        assert!(unverified_claims("abc").is_err());
        assert!(unverified_claims("a.!!!.c").is_err());
    }
}
