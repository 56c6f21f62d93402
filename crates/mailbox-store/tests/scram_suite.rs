//! The store's half of SCRAM-SHA-256 (RFC 5802, RFC 7677) over its real
//! gRPC server, on both backends: keys made with the password, the
//! ClientProof check and ServerSignature, fake salts for unknown users,
//! the login throttle, and keys filled in at a PLAIN login for accounts
//! made before SCRAM. The client side is computed here from the RFC's
//! formulas (the gateway's exchange is tested end to end with Python's
//! scramp in crates/e2e/tests/sso.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::num::NonZeroU32;

use common::{Backend, TestStore, start, start_with};
use mailbox_api::pb;
use ring::{digest, hmac, pbkdf2};
use tonic::Code;

both_backends!(
    scram_keys_prove_the_password_and_sign_the_exchange,
    scram_hides_unknown_users_and_counts_failures,
    scram_keys_follow_password_changes_and_fill_in_at_plain_login,
);

/// RFC 5802 3: ClientProof := ClientKey XOR HMAC(H(ClientKey),
/// AuthMessage); the expected ServerSignature := HMAC(ServerKey,
/// AuthMessage).
fn client_proof(password: &str, salt: &[u8], iterations: u32, auth: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(iterations).unwrap(),
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let k = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&k, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let sig = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
        auth,
    );
    let proof = client_key
        .as_ref()
        .iter()
        .zip(sig.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac::sign(&k, b"Server Key");
    let server_sig = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
        auth,
    );
    (proof, server_sig.as_ref().to_vec())
}

async fn begin(t: &TestStore, user: &str) -> pb::ScramBeginResponse {
    t.anonymous()
        .scram_begin(pb::ScramBeginRequest {
            username: user.into(),
            client_ip: "192.0.2.1".into(),
            protocol: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn finish(
    t: &TestStore,
    user: &str,
    auth: &[u8],
    proof: Vec<u8>,
    ip: &str,
) -> Result<pb::ScramFinishResponse, tonic::Status> {
    t.anonymous()
        .scram_finish(pb::ScramFinishRequest {
            username: user.into(),
            auth_message: auth.to_vec(),
            client_proof: proof,
            client_ip: ip.into(),
            protocol: "test".into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A login through SCRAM with `password`: the session's account, or the
/// store's refusal.
async fn scram_login(
    t: &TestStore,
    user: &str,
    password: &str,
    ip: &str,
) -> Result<String, tonic::Status> {
    let b = begin(t, user).await;
    let auth = format!(
        "n={user},r=abc,r=abcdef,s=x,i={},c=biws,r=abcdef",
        b.iterations
    );
    let (proof, server_sig) = client_proof(password, &b.salt, b.iterations, auth.as_bytes());
    let r = finish(t, user, auth.as_bytes(), proof, ip).await?;
    assert_eq!(r.server_signature, server_sig, "RFC 5802 3 ServerSignature");
    Ok(r.session_token)
}

/// RFC 7677 4: at least 4096 iterations; RFC 5802 3: a good proof gives
/// a session and the ServerSignature; a proof for another AuthMessage or
/// another password does not.
async fn scram_keys_prove_the_password_and_sign_the_exchange(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t.add_account("alice@example.org", "pencil").await;
    let b = begin(&t, "alice@example.org").await;
    assert!(b.iterations >= 4096, "{}", b.iterations);
    assert_eq!(b.salt.len(), 16);
    let token = scram_login(&t, "Alice@Example.org", "pencil", "192.0.2.1")
        .await
        .unwrap();
    // The session works like a PLAIN login's.
    let boxes = t
        .with_token(&token)
        .list_mailboxes(pb::ListMailboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!boxes.mailboxes.is_empty());
    // A replayed proof over another AuthMessage fails.
    let auth = format!(
        "n=alice@example.org,r=a,r=ab,s=x,i={},c=biws,r=ab",
        b.iterations
    );
    let (proof, _) = client_proof("pencil", &b.salt, b.iterations, auth.as_bytes());
    let e = finish(&t, "alice@example.org", b"other", proof, "192.0.2.1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let e = scram_login(&t, "alice@example.org", "pen", "192.0.2.1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // A disabled account is refused even with the right proof.
    t.admin()
        .set_account_disabled(pb::SetAccountDisabledRequest {
            address: "alice@example.org".into(),
            disabled: true,
        })
        .await
        .unwrap();
    let e = scram_login(&t, "alice@example.org", "pencil", "192.0.2.1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
}

/// The first step answers alike for every name (a stable salt, the same
/// iterations), so it does not tell which accounts exist; failed proofs
/// count in the throttle PLAIN logins use (per account and per IP).
async fn scram_hides_unknown_users_and_counts_failures(backend: Backend) {
    let t = start_with(backend, |s| {
        s.max_failures_per_account = 3;
        s.max_failures_per_ip = 100;
    })
    .await;
    t.add_domain("example.org").await;
    t.add_account("bob@example.org", "right").await;
    let known = begin(&t, "bob@example.org").await;
    let unknown = begin(&t, "nobody@example.org").await;
    assert_eq!(unknown.iterations, known.iterations);
    assert_eq!(unknown.salt.len(), known.salt.len());
    assert_eq!(begin(&t, "nobody@example.org").await.salt, unknown.salt);
    assert_ne!(begin(&t, "other@example.org").await.salt, unknown.salt);
    // The same fake salt from a second replica (the secret is shared).
    if matches!(backend, Backend::Postgres) {
        let r = t.replica().await;
        assert_eq!(begin(&r, "nobody@example.org").await.salt, unknown.salt);
    }
    let e = scram_login(&t, "nobody@example.org", "x", "192.0.2.7")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    for _ in 0..3 {
        let e = scram_login(&t, "bob@example.org", "wrong", "192.0.2.8")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    let e = scram_login(&t, "bob@example.org", "right", "192.0.2.9")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
    // PLAIN shares the count.
    let e = t
        .anonymous()
        .authenticate(pb::AuthenticateRequest {
            username: "bob@example.org".into(),
            password: "right".into(),
            client_ip: "192.0.2.9".into(),
            protocol: "test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
}

/// SetPassword makes new keys (the old password stops working through
/// SCRAM too); an account made before SCRAM (no keys) gets them at its
/// next PLAIN login with the password, and not with an app password.
async fn scram_keys_follow_password_changes_and_fill_in_at_plain_login(backend: Backend) {
    let t = start(backend).await;
    t.add_domain("example.org").await;
    t.add_account("carol@example.org", "first").await;
    let salt1 = begin(&t, "carol@example.org").await.salt;
    t.admin()
        .set_password(pb::SetPasswordRequest {
            address: "carol@example.org".into(),
            password: "second".into(),
        })
        .await
        .unwrap();
    assert_ne!(begin(&t, "carol@example.org").await.salt, salt1);
    assert!(
        scram_login(&t, "carol@example.org", "first", "192.0.2.1")
            .await
            .is_err()
    );
    scram_login(&t, "carol@example.org", "second", "192.0.2.1")
        .await
        .unwrap();

    // As an account from before SCRAM: no keys.
    let sql = "UPDATE accounts SET scram_salt = NULL, scram_iterations = NULL, \
               scram_stored_key = NULL, scram_server_key = NULL WHERE address = 'carol@example.org'";
    match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(t.url()).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(t.url()).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
    let fake = begin(&t, "carol@example.org").await.salt;
    assert!(
        scram_login(&t, "carol@example.org", "second", "192.0.2.1")
            .await
            .is_err()
    );
    // An app password logs in but makes no keys (it is not the password).
    let app = t
        .admin()
        .add_app_password(pb::AddAppPasswordRequest {
            address: "carol@example.org".into(),
            name: "phone".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .password;
    t.login("carol@example.org", &app).await;
    assert_eq!(begin(&t, "carol@example.org").await.salt, fake);
    t.login("carol@example.org", "second").await;
    assert_ne!(begin(&t, "carol@example.org").await.salt, fake);
    scram_login(&t, "carol@example.org", "second", "192.0.2.1")
        .await
        .unwrap();
}
