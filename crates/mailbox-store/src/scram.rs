//! The store's half of SCRAM-SHA-256 (RFC 5802 3, RFC 7677): the keys made
//! from a password, the fake salt of an unknown user, and the check of a
//! ClientProof. The gateway runs the exchange (nonces, channel binding,
//! AuthMessage); ServerKey and StoredKey never leave the store.

use std::num::NonZeroU32;

use ring::{digest, hmac, pbkdf2};

/// PBKDF2 iterations for new keys. RFC 7677 4 asks for at least 4096;
/// 10000 costs a client a few milliseconds and an offline guess 2.4 times
/// the minimum. Older keys keep their own count (it is stored with them).
pub const ITERATIONS: u32 = 10_000;

/// Bytes of a fresh salt.
const SALT_LEN: usize = 16;

/// What the store keeps for an account's SCRAM logins (hex in the database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramKeys {
    /// Keys for a password with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        Self::derive(password.as_bytes(), &salt, ITERATIONS)
    }

    /// RFC 5802 3: SaltedPassword := Hi(Normalize(password), salt, i),
    /// ClientKey := HMAC(SaltedPassword, "Client Key"), StoredKey :=
    /// H(ClientKey), ServerKey := HMAC(SaltedPassword, "Server Key").
    /// The password is used as it is (SASLprep of ASCII is the identity).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN),
            salt,
            password,
            &mut salted,
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&key, b"Client Key");
        let server_key = hmac::sign(&key, b"Server Key");
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(client_key.as_ref()),
            server_key: to32(server_key.as_ref()),
        }
    }

    /// The hex columns: salt, iterations, StoredKey, ServerKey.
    pub fn to_columns(&self) -> (String, i64, String, String) {
        (
            hex::encode(&self.salt),
            i64::from(self.iterations),
            hex::encode(self.stored_key),
            hex::encode(self.server_key),
        )
    }

    pub fn from_columns(salt: &str, iterations: i64, stored: &str, server: &str) -> Option<Self> {
        Some(Self {
            salt: hex::decode(salt).ok()?,
            iterations: u32::try_from(iterations).ok()?,
            stored_key: hex::decode(stored).ok()?.try_into().ok()?,
            server_key: hex::decode(server).ok()?.try_into().ok()?,
        })
    }

    /// RFC 5802 3: ClientSignature := HMAC(StoredKey, AuthMessage);
    /// ClientKey := ClientProof XOR ClientSignature; the proof is good when
    /// H(ClientKey) = StoredKey. Then the ServerSignature :=
    /// HMAC(ServerKey, AuthMessage) the client checks.
    pub fn verify(&self, auth_message: &[u8], client_proof: &[u8]) -> Option<[u8; 32]> {
        if client_proof.len() != 32 {
            return None;
        }
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.stored_key),
            auth_message,
        );
        let client_key: Vec<u8> = client_proof
            .iter()
            .zip(sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let diff = sha256(&client_key)
            .iter()
            .zip(self.stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        let server = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &self.server_key),
            auth_message,
        );
        Some(to32(server.as_ref()))
    }
}

/// The salt shown for a user with no SCRAM keys (unknown, or created
/// before SCRAM and not logged in since): the same for the same name on
/// every replica, so asking twice tells nothing.
pub fn fake_salt(secret: &[u8], username: &str) -> Vec<u8> {
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, secret),
        format!("scram-fake-salt:{username}").as_bytes(),
    );
    tag.as_ref()[..SALT_LEN].to_vec()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    to32(digest::digest(&digest::SHA256, b).as_ref())
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&b[..32]);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// RFC 7677 3: the example exchange, user "user", password "pencil",
    /// salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    #[test]
    fn rfc7677_section3_example() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive(b"pencil", &salt, 4096);
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
                    r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
                    c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let proof = b64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        let sig = keys.verify(auth.as_bytes(), &proof).expect("proof holds");
        assert_eq!(
            b64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let mut bad = proof.clone();
        bad[0] ^= 1;
        assert!(keys.verify(auth.as_bytes(), &bad).is_none());
        assert!(keys.verify(auth.as_bytes(), &proof[..31]).is_none());
        let cols = keys.to_columns();
        assert_eq!(
            ScramKeys::from_columns(&cols.0, cols.1, &cols.2, &cols.3),
            Some(keys)
        );
    }

    #[test]
    fn fake_salt_is_stable_per_name() {
        assert_eq!(fake_salt(b"k", "a@x"), fake_salt(b"k", "a@x"));
        assert_ne!(fake_salt(b"k", "a@x"), fake_salt(b"k", "b@x"));
        assert_ne!(fake_salt(b"k", "a@x"), fake_salt(b"j", "a@x"));
        assert_eq!(fake_salt(b"k", "a@x").len(), SALT_LEN);
    }
}
