//! A small OpenID Connect issuer for tests: ES256 keys made with ring, the
//! public ones served as a JWKS by a real HTTP server on 127.0.0.1:0, and
//! JWTs signed here (RFC 7515 compact form, RFC 7518 3.4 ES256: r || s).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One signing key and its `kid`.
pub struct SigningKey {
    pub kid: String,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("P-256 key");
        Self {
            kid: kid.into(),
            pair,
        }
    }

    /// The public key as a JWK (RFC 7518 6.2): x and y are the halves of
    /// the uncompressed point after its 0x04.
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        assert_eq!(point.len(), 65);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
            "x": B64URL.encode(&point[1..33]),
            "y": B64URL.encode(&point[33..65]),
        })
    }

    /// A JWT with these claims, signed with this key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("signs");
        format!("{input}.{}", B64URL.encode(sig.as_ref()))
    }
}

/// The issuer: its key, and its JWKS served over HTTP.
pub struct TestIssuer {
    pub key: SigningKey,
    /// `http://127.0.0.1:PORT/jwks`
    pub jwks_url: String,
    pub issuer: String,
    fetches: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    pub async fn start() -> Self {
        let key = SigningKey::generate("key-1");
        let body = serde_json::json!({ "keys": [key.jwk()] }).to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let (body, counter) = (body.clone(), counter.clone());
                tokio::spawn(async move {
                    // The request head, then one response and close.
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let resp = if req.starts_with(b"GET /jwks ") {
                        counter.fetch_add(1, Ordering::SeqCst);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            key,
            jwks_url: format!("http://{addr}/jwks"),
            issuer: format!("http://{addr}"),
            fetches,
            server,
        }
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// A token from this issuer for `audience` naming `email`, valid for
    /// `valid_secs` from now (negative: expired).
    pub fn token(&self, audience: &str, email: &str, valid_secs: i64) -> String {
        self.key.sign(&self.claims(audience, email, valid_secs))
    }

    pub fn claims(&self, audience: &str, email: &str, valid_secs: i64) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        serde_json::json!({
            "iss": self.issuer,
            "aud": audience,
            "sub": format!("sub-{email}"),
            "email": email,
            "email_verified": true,
            "iat": now - 10,
            "exp": now + valid_secs,
        })
    }
}
