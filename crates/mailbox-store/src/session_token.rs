//! Session tokens that carry their own proof (DESIGN.md 8): a store
//! replica checks one with a MAC and what it holds in memory, so opening,
//! using and ending a session asks the database nothing.
//!
//! A token is base64url (no padding) of
//!
//! ```text
//! version (1) | account (8) | generation (8) | app password (8, 0: none)
//! | expires (8, unix seconds) | nonce (16) | protocol (0..=32 bytes)
//! | HMAC-SHA256(key, everything before it) (32)
//! ```
//!
//! integers big-endian. The key is the cluster's (kept in `store_secrets`,
//! read once per replica), so every replica checks every replica's
//! tokens. What the MAC cannot know is checked by the store against the
//! account: that its session generation is still the token's (a new
//! password, a disabling or a deletion moves it on), that the app
//! password it was opened with still exists, and that it has not expired
//! (or was renewed, see `Store::resolve_session`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use rand::RngCore;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const VERSION: u8 = 1;
/// Bytes before the protocol.
const FIXED: usize = 1 + 8 + 8 + 8 + 8 + 16;
const MAC: usize = 32;
/// Longest protocol name a token keeps (longer ones are cut).
const MAX_PROTOCOL: usize = 32;
/// Longest token text accepted, so a huge header costs no decoding.
const MAX_TEXT: usize = (FIXED + MAX_PROTOCOL + MAC).div_ceil(3) * 4;

/// What a session token says about its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub account: i64,
    /// The account's session generation when the session was opened.
    pub generation: i64,
    /// The app password it was opened with, if any.
    pub app: Option<i64>,
    /// Unix seconds after which it is refused unless renewed.
    pub expires: i64,
    /// What opened it ("imap", "pop3", an admin session's purpose...),
    /// for the record only.
    pub protocol: String,
}

/// Signs and checks session tokens with the cluster's key.
pub struct TokenKey(HmacSha256);

impl TokenKey {
    pub fn new(key: [u8; 32]) -> Self {
        // HMAC pads a key shorter than SHA-256's block with zeros: the
        // same key, said at the length `KeyInit::new` takes.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        Self(<HmacSha256 as KeyInit>::new(&block.into()))
    }

    fn mac(&self) -> HmacSha256 {
        self.0.clone()
    }

    /// A new token for `claims`, unique by its random nonce.
    pub fn issue(&self, claims: &Claims) -> String {
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        let protocol = cut(&claims.protocol, MAX_PROTOCOL);
        let mut buf = Vec::with_capacity(FIXED + protocol.len() + MAC);
        buf.push(VERSION);
        buf.extend_from_slice(&claims.account.to_be_bytes());
        buf.extend_from_slice(&claims.generation.to_be_bytes());
        buf.extend_from_slice(&claims.app.unwrap_or(0).to_be_bytes());
        buf.extend_from_slice(&claims.expires.to_be_bytes());
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(protocol.as_bytes());
        let mut mac = self.mac();
        mac.update(&buf);
        buf.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// The claims of a token this cluster issued, unaltered; `None` for
    /// anything else (malformed, another key, a changed byte).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        if token.len() > MAX_TEXT {
            return None;
        }
        let buf = URL_SAFE_NO_PAD.decode(token).ok()?;
        if buf.len() < FIXED + MAC || buf.len() > FIXED + MAX_PROTOCOL + MAC {
            return None;
        }
        let (body, tag) = buf.split_at(buf.len() - MAC);
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        if body[0] != VERSION {
            return None;
        }
        let int = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        let app = int(17)?;
        Some(Claims {
            account: int(1)?,
            generation: int(9)?,
            app: (app != 0).then_some(app),
            expires: int(25)?,
            protocol: String::from_utf8(body[FIXED..].to_vec()).ok()?,
        })
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            account: 42,
            generation: 3,
            app: Some(7),
            expires: 1_900_000_000,
            protocol: "imap".into(),
        }
    }

    #[test]
    fn a_token_says_what_it_was_issued_with() {
        let key = TokenKey::new([9; 32]);
        let t = key.issue(&claims());
        assert_eq!(key.verify(&t), Some(claims()));
        assert!(t.len() <= MAX_TEXT);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        );
        let none = Claims {
            app: None,
            protocol: String::new(),
            ..claims()
        };
        assert_eq!(key.verify(&key.issue(&none)), Some(none));
        // Unique by their nonce.
        assert_ne!(key.issue(&claims()), t);
        let long = Claims {
            protocol: "é".repeat(40),
            ..claims()
        };
        let got = key.verify(&key.issue(&long)).unwrap();
        assert_eq!(got.protocol, "é".repeat(16));
    }

    #[test]
    fn altered_forged_or_foreign_tokens_are_refused() {
        let key = TokenKey::new([9; 32]);
        let t = key.issue(&claims());
        let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        // Every single changed byte (account, generation, expiry, MAC...).
        for i in 0..raw.len() {
            let mut r = raw.clone();
            r[i] ^= 1;
            assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&r)), None, "byte {i}");
        }
        // Cut short, lengthened, another key, not base64, huge, empty.
        assert_eq!(
            key.verify(&URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1])),
            None
        );
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(key.verify(&URL_SAFE_NO_PAD.encode(&longer)), None);
        assert_eq!(TokenKey::new([8; 32]).verify(&t), None);
        assert_eq!(key.verify("not a token!"), None);
        assert_eq!(key.verify(&"A".repeat(10_000)), None);
        assert_eq!(key.verify(""), None);
        assert_eq!(key.verify(&"ab".repeat(32)), None, "a token of before");
    }
}
