//! Logins and sessions: password, app-password, token (OpenID Connect)
//! and SCRAM logins, the login throttle, session tokens (open, resolve,
//! renew, logout) and password hashing. The SQL is `ops/auth.rs` (both
//! backends); what a login checks is cached in `auth_cache`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher};
use mail_types::EmailAddress;
use mailbox_api::pb;
use sha2::{Digest, Sha256};

use super::{AccountId, Backend, Store, lite, parse_address, pg};
use crate::auth_cache::{AccountAuth, Proof};
use crate::error::{Result, StoreError};

/// A login's place in the throttle (see `Store::throttle`).
struct Throttle {
    acct_key: String,
    ip_key: Option<String>,
    since: i64,
    acct_fail: i64,
}

/// The throttle's keys for a login name and a client address. Names and
/// addresses longer than any real one are keyed by their SHA-256, so a
/// key (and the notification that carries it) stays small whatever a
/// client sends.
fn throttle_keys(user: &str, client_ip: &str) -> (String, String) {
    let key = |kind: &str, v: &str, max: usize| {
        if v.len() > max {
            format!("{kind}:#{}", hex::encode(Sha256::digest(v.as_bytes())))
        } else {
            format!("{kind}:{v}")
        }
    };
    (key("acct", user, 320), key("ip", client_ip, 64))
}

/// The name a login counts under (throttle, fake salt, session): the
/// address in its one spelling when it is one (`Alice@Example.org.` and
/// `alice@example.org` are the same account), else the name lower-cased.
fn login_name(raw: &str) -> String {
    let u = raw.trim().to_lowercase();
    EmailAddress::parse(&u)
        .map(|a| a.as_str().to_string())
        .unwrap_or(u)
}

/// A session token's SHA-256: its key in memory, and (hex) in `sessions`.
fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Longest password accepted (argon2 work is bounded by it).
const MAX_PASSWORD: usize = 1024;

/// A hash to verify against when the user does not exist, so unknown users
/// cost the same time as wrong passwords.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no such user: timing equaliser")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// App passwords are "app-" and 32 hex digits (128 random bits).
pub(super) const APP_PASSWORD_PREFIX: &str = "app-";

fn is_app_password(p: &str) -> bool {
    p.strip_prefix(APP_PASSWORD_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Store {
    /// Verifies a login. Wrong password, unknown user and disabled account
    /// give the same error after the same work; repeated failures per account
    /// and per client IP are refused for the throttle window.
    pub async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client_ip: &str,
        protocol: &str,
    ) -> Result<(String, String)> {
        let s = &self.inner.settings;
        let window = s.throttle_window.as_secs() as i64;
        let since = crate::model::now() - window;
        let user = login_name(username);
        let (acct_key, ip_key) = throttle_keys(&user, client_ip);
        let (acct_fail, ip_fail) = self.failures_of(&acct_key, &ip_key, since).await?;
        let ip_fail = if client_ip.is_empty() { 0 } else { ip_fail };
        if acct_fail >= s.max_failures_per_account as i64 || ip_fail >= s.max_failures_per_ip as i64
        {
            service_kit::metrics::auth_failure("throttled");
            tokio::time::sleep(s.failure_delay).await;
            return Err(StoreError::Throttled);
        }
        let auth = &self.inner.auth;
        // A repeat login: from memory while its account is heard unchanged
        // (see `auth_cache`), no database and no argon2.
        if let Some((account, app)) = auth.trusted_login(&user, password) {
            if acct_fail > 0 {
                self.clear_failures(&acct_key).await;
            }
            return self.new_session(&account, protocol, app).map(|t| (t, user));
        }
        let epoch = auth.epoch();
        // An app password (the format this store makes them in) is looked
        // up by its hash: 128 random bits need no argon2.
        if is_app_password(password)
            && let Ok(a) = EmailAddress::parse(&user)
            && let Some((row, app)) = on_backend!(
                self,
                app_password_login(
                    a.as_str(),
                    &hex::encode(Sha256::digest(password.as_bytes()))
                )
            )?
        {
            let account = Arc::new(AccountAuth::from_row(row));
            auth.remember_account(account.clone(), epoch);
            if !account.disabled {
                auth.remember(&user, password, account.id, Proof::App(app));
                if acct_fail > 0 {
                    self.clear_failures(&acct_key).await;
                }
                return self
                    .new_session(&account, protocol, Some(app))
                    .map(|t| (t, user));
            }
        }
        let creds = match EmailAddress::parse(&user) {
            Ok(a) => on_backend!(self, credentials(a.as_str()))?
                .map(|row| Arc::new(AccountAuth::from_row(row))),
            Err(_) => None,
        };
        if let Some(a) = &creds {
            auth.remember_account(a.clone(), epoch);
        }
        let account = creds.filter(|a| !a.disabled);
        let hash = match &account {
            Some(a) => a.password_hash.clone(),
            None => dummy_hash().to_string(),
        };
        let ok = match &account {
            Some(a) => {
                auth.verified(&user, password, a.id, &hash) || {
                    let ok = self.verify_password(password, &hash).await;
                    if ok {
                        auth.remember(&user, password, a.id, Proof::Hash(hash.clone()));
                    }
                    ok
                }
            }
            None => {
                // Unknown users cost the same argon2 work as wrong passwords.
                self.verify_password(password, &hash).await;
                false
            }
        };
        let Some(account) = account.filter(|_| ok) else {
            self.record_failure(&acct_key, since).await;
            if !client_ip.is_empty() {
                self.record_failure(&ip_key, since).await;
            }
            service_kit::metrics::auth_failure("bad_credentials");
            tokio::time::sleep(s.failure_delay).await;
            return Err(StoreError::BadCredentials);
        };
        if acct_fail > 0 {
            self.clear_failures(&acct_key).await;
        }
        if !account.has_scram {
            // An account made before SCRAM: its keys from the password
            // just proven (a failure here costs SCRAM, not the login).
            match self.scram_columns(password).await {
                Ok(scram) => {
                    if let Err(e) = on_backend!(self, fill_scram_keys(account.id, &hash, &scram)) {
                        tracing::warn!(error = %e, "storing SCRAM keys");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "making SCRAM keys"),
            }
        }
        let token = self.new_session(&account, protocol, None)?;
        Ok((token, user))
    }

    /// OAUTHBEARER / XOAUTH2: a session for the mailbox a JWT names,
    /// when the token checks out against that domain's issuer (see
    /// `oidc`). `Ok(Err(json))` is a refusal carrying the RFC 7628 3.2.2
    /// error object. The domain is the one of `authzid` when the client
    /// gave one (the token must then name that very mailbox), else of the
    /// token's `email` claim; the domain's configured claim must name a
    /// mailbox of that domain. Failures count per client IP (and per
    /// account when one was named) in the login throttle.
    pub async fn authenticate_token(
        &self,
        token: &str,
        authzid: &str,
        client_ip: &str,
        protocol: &str,
    ) -> Result<std::result::Result<(String, String), String>> {
        let authzid = authzid.trim().to_lowercase();
        let t = self.throttle(&authzid, client_ip).await?;
        match self.verify_token(token, &authzid).await {
            Ok((account, address)) => {
                if !authzid.is_empty() && t.acct_fail > 0 {
                    self.clear_failures(&t.acct_key).await;
                }
                let token = self.session_for(account, protocol).await?;
                Ok(Ok((token, address)))
            }
            Err(crate::oidc::Refused::Unavailable(e)) => {
                tracing::warn!(error = %e, "token login: issuer keys unavailable");
                Err(StoreError::Internal(format!(
                    "issuer keys unavailable: {e}"
                )))
            }
            Err(refused) => {
                tracing::info!(reason = %refused, "token login refused");
                self.failed(&t, !authzid.is_empty()).await?;
                Ok(Err(refused.error_json()))
            }
        }
    }

    async fn verify_token(
        &self,
        token: &str,
        authzid: &str,
    ) -> std::result::Result<(i64, String), crate::oidc::Refused> {
        use crate::oidc::Refused;
        let invalid = |m: &str| Refused::Invalid(m.to_string());
        let named = if authzid.is_empty() {
            let claims = crate::oidc::unverified_claims(token)?;
            claims[crate::oidc::DEFAULT_CLAIM]
                .as_str()
                .ok_or_else(|| invalid("no authzid and no email claim"))?
                .to_lowercase()
        } else {
            authzid.to_string()
        };
        let named = EmailAddress::parse(&named).map_err(|_| invalid("not a mailbox address"))?;
        let domain = named.domain().to_string();
        let issuer = match on_backend!(self, domain_oidc(&domain)) {
            Ok(Some((issuer, audience, jwks_url, claim))) => crate::oidc::Issuer {
                issuer,
                audience,
                jwks_url,
                claim,
            },
            Ok(None) => return Err(invalid("the domain has no OpenID Connect issuer")),
            Err(e) => return Err(Refused::Unavailable(e.to_string())),
        };
        let claims = self.inner.jwks.verify(token, &issuer).await?;
        let claim = if issuer.claim.is_empty() {
            crate::oidc::DEFAULT_CLAIM
        } else {
            &issuer.claim
        };
        let address = claims[claim]
            .as_str()
            .ok_or_else(|| invalid("the mailbox claim is missing"))?
            .to_lowercase();
        let address =
            EmailAddress::parse(&address).map_err(|_| invalid("the claim is no address"))?;
        if address.domain() != domain || (!authzid.is_empty() && address.as_str() != authzid) {
            return Err(invalid("the token is for another mailbox"));
        }
        // An address the issuer says is unverified names no mailbox
        // (false, or "false" from issuers that send strings).
        let unverified = match claims.get("email_verified") {
            Some(serde_json::Value::Bool(b)) => !b,
            Some(serde_json::Value::String(s)) => !s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        if unverified && claim == "email" {
            return Err(invalid("email not verified"));
        }
        match on_backend!(self, credentials(address.as_str())) {
            Ok(Some((id, _, false, ..))) => Ok((id, address.as_str().to_string())),
            Ok(_) => Err(invalid("no such mailbox, or disabled")),
            Err(e) => Err(Refused::Unavailable(e.to_string())),
        }
    }

    /// Sets (empty issuer: removes) a domain's OpenID Connect issuer.
    pub async fn set_domain_oidc(&self, o: &pb::DomainOidc) -> Result<()> {
        let d =
            mail_types::Domain::parse(&o.domain).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if !o.issuer.is_empty() {
            if o.audience.trim().is_empty() {
                return Err(StoreError::Invalid("an audience is needed".into()));
            }
            crate::oidc::check_jwks_url(&o.jwks_url).map_err(StoreError::Invalid)?;
        }
        let claim = if o.mailbox_claim.is_empty() {
            crate::oidc::DEFAULT_CLAIM
        } else {
            o.mailbox_claim.as_str()
        };
        on_backend!(
            self,
            set_domain_oidc(
                d.as_str(),
                o.issuer.trim(),
                o.audience.trim(),
                o.jwks_url.trim(),
                claim
            )
        )
    }

    pub async fn domain_oidc(&self, domain: &str) -> Result<Option<pb::DomainOidc>> {
        let d =
            mail_types::Domain::parse(domain).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(on_backend!(self, domain_oidc(d.as_str()))?.map(
            |(issuer, audience, jwks_url, mailbox_claim)| pb::DomainOidc {
                domain: d.as_str().to_string(),
                issuer,
                audience,
                jwks_url,
                mailbox_claim,
            },
        ))
    }

    /// SCRAM keys for a password, made off the async threads (PBKDF2).
    pub(super) async fn scram_columns(&self, password: &str) -> Result<crate::model::ScramColumns> {
        let pw = password.to_string();
        tokio::task::spawn_blocking(move || crate::scram::ScramKeys::new(&pw).to_columns())
            .await
            .map_err(|e| StoreError::Internal(format!("scram keys: {e}")))
    }

    /// Failures of two throttle keys in windows begun at or after `since`:
    /// from the mirror when it is in sync, else from the database.
    async fn failures_of(&self, a: &str, b: &str, since: i64) -> Result<(i64, i64)> {
        if let Some(counts) = self.inner.failures.failures_of(a, b, since) {
            return Ok(counts);
        }
        on_backend!(self, failures_of(a, b, since))
    }

    /// Counts a failure in the database (the shared record; the other
    /// replicas' mirrors learn of it from the notification, this one's
    /// from the row the statement returns, so this replica's next login
    /// sees it without waiting for its own notification to come back).
    /// Never fails the refusal it belongs to: an error is logged and the
    /// mirror stops answering until its next full load.
    async fn record_failure(&self, key: &str, since: i64) {
        match on_backend!(self, record_failure(key, since, &self.inner.origin)) {
            Ok((failures, window_start)) => {
                self.inner
                    .failures
                    .apply(key, failures, window_start, since)
            }
            Err(e) => {
                tracing::warn!(error = %e, "recording a failed login");
                self.inner.failures.unsync();
            }
        }
    }

    /// Forgets a key's failures after a successful login (best effort: a
    /// count left behind only expires with its window).
    async fn clear_failures(&self, key: &str) {
        if let Err(e) = on_backend!(self, clear_failures(key, &self.inner.origin)) {
            tracing::warn!(error = %e, "clearing failed logins");
        }
    }

    /// A login name's and a client address's failures in the current
    /// throttle window, and whether this replica answered from its mirror
    /// (PostgreSQL, listener in sync) rather than the database: for
    /// operators and for the tests of the mirror.
    pub async fn login_failures(&self, user: &str, client_ip: &str) -> Result<(i64, i64, bool)> {
        let since = crate::model::now() - self.inner.settings.throttle_window.as_secs() as i64;
        let (a, i) = throttle_keys(&login_name(user), client_ip);
        if let Some((x, y)) = self.inner.failures.failures_of(&a, &i, since) {
            return Ok((x, y, true));
        }
        let (x, y) = on_backend!(self, failures_of(&a, &i, since))?;
        Ok((x, y, false))
    }

    /// The throttle keys of a login and whether it is refused now: the
    /// same per-account and per-IP counts `authenticate` keeps.
    async fn throttle(&self, user: &str, client_ip: &str) -> Result<Throttle> {
        let s = &self.inner.settings;
        let since = crate::model::now() - s.throttle_window.as_secs() as i64;
        let (acct_key, ip_key) = throttle_keys(user, client_ip);
        let (acct_fail, ip_fail) = self.failures_of(&acct_key, &ip_key, since).await?;
        let ip_fail = if client_ip.is_empty() { 0 } else { ip_fail };
        // No name (a token login without one): no account to count for.
        let acct_fail = if user.is_empty() { 0 } else { acct_fail };
        if acct_fail >= s.max_failures_per_account as i64 || ip_fail >= s.max_failures_per_ip as i64
        {
            service_kit::metrics::auth_failure("throttled");
            tokio::time::sleep(s.failure_delay).await;
            return Err(StoreError::Throttled);
        }
        Ok(Throttle {
            acct_key,
            ip_key: (!client_ip.is_empty()).then_some(ip_key),
            since,
            acct_fail,
        })
    }

    /// Counts a failed login in the throttle, waits the failure delay.
    async fn failed(&self, t: &Throttle, per_account: bool) -> Result<()> {
        if per_account {
            self.record_failure(&t.acct_key, t.since).await;
        }
        if let Some(ip) = &t.ip_key {
            self.record_failure(ip, t.since).await;
        }
        service_kit::metrics::auth_failure("bad_credentials");
        tokio::time::sleep(self.inner.settings.failure_delay).await;
        Ok(())
    }

    /// SCRAM, first step (RFC 5802 3): the salt and iteration count of a
    /// user. Unknown users and accounts without keys get a salt derived
    /// from the name, so the answer does not tell them apart; their
    /// ScramFinish fails.
    pub async fn scram_begin(&self, username: &str) -> Result<(Vec<u8>, u32)> {
        let user = login_name(username);
        let keys = match EmailAddress::parse(&user) {
            Ok(a) => self.scram_keys_of(a.as_str()).await?.map(|(_, _, k)| k),
            Err(_) => None,
        };
        Ok(match keys {
            Some(k) => (k.salt, k.iterations),
            None => (
                crate::scram::fake_salt(&self.inner.scram_secret, &user),
                crate::scram::ITERATIONS,
            ),
        })
    }

    async fn scram_keys_of(
        &self,
        address: &str,
    ) -> Result<Option<(i64, bool, crate::scram::ScramKeys)>> {
        let row = on_backend!(self, scram_keys(address))?;
        Ok(row.and_then(|(id, disabled, salt, iter, stored, server)| {
            let k = crate::scram::ScramKeys::from_columns(
                salt.as_deref()?,
                iter?,
                stored.as_deref()?,
                server.as_deref()?,
            )?;
            Some((id, disabled, k))
        }))
    }

    /// SCRAM, last step: checks the ClientProof over the AuthMessage the
    /// gateway built; returns the ServerSignature, a session and the
    /// account. Failures count in the login throttle; a disabled account
    /// is refused like a wrong proof.
    pub async fn scram_finish(
        &self,
        username: &str,
        auth_message: &[u8],
        client_proof: &[u8],
        client_ip: &str,
        protocol: &str,
    ) -> Result<([u8; 32], String, String)> {
        let user = login_name(username);
        let t = self.throttle(&user, client_ip).await?;
        let keys = match EmailAddress::parse(&user) {
            Ok(a) => self.scram_keys_of(a.as_str()).await?,
            Err(_) => None,
        };
        let verified = match &keys {
            Some((id, false, k)) => k.verify(auth_message, client_proof).map(|s| (*id, s)),
            _ => None,
        };
        let Some((account, signature)) = verified else {
            // An account without SCRAM keys cannot be guessed at here:
            // its failures count per IP only, so a client that tries
            // SCRAM first does not lock its user out of PLAIN.
            self.failed(&t, keys.is_some()).await?;
            return Err(StoreError::BadCredentials);
        };
        if t.acct_fail > 0 {
            self.clear_failures(&t.acct_key).await;
        }
        let token = self.session_for(account, protocol).await?;
        Ok((signature, token, user))
    }

    /// A new session token for an account as just read or trusted
    /// (opened with an app password when `app` is set: it ends when that
    /// is revoked). Nothing is written: the token is signed, and carries
    /// the account's session generation, which a new password or a
    /// disabling moves on. A disabled account gets none.
    fn new_session(
        &self,
        account: &AccountAuth,
        protocol: &str,
        app: Option<i64>,
    ) -> Result<String> {
        if account.disabled {
            return Err(StoreError::BadCredentials);
        }
        let ttl = self.inner.settings.session_ttl.as_secs() as i64;
        Ok(self.inner.tokens.issue(&crate::session_token::Claims {
            account: account.id,
            generation: account.generation,
            app,
            expires: crate::model::now() + ttl,
            protocol: protocol.to_string(),
        }))
    }

    /// A new session for an account known by id (SCRAM, token logins).
    async fn session_for(&self, account: i64, protocol: &str) -> Result<String> {
        let a = self
            .account_auth(account, crate::auth_cache::SESSION_TRUST)
            .await?
            .ok_or(StoreError::BadCredentials)?;
        self.new_session(&a, protocol, None)
    }

    /// What a login or a session checks of an account: from memory when
    /// trusted for `max_age`, else read (and remembered).
    async fn account_auth(
        &self,
        account: i64,
        max_age: Duration,
    ) -> Result<Option<Arc<AccountAuth>>> {
        if let Some(a) = self.inner.auth.account(account, max_age) {
            return Ok(Some(a));
        }
        self.read_account_auth(account).await
    }

    async fn read_account_auth(&self, account: i64) -> Result<Option<Arc<AccountAuth>>> {
        let epoch = self.inner.auth.epoch();
        let row = on_backend!(self, account_auth(account))?;
        Ok(row.map(|row| {
            let a = Arc::new(AccountAuth::from_row(row));
            self.inner.auth.remember_account(a.clone(), epoch);
            a
        }))
    }

    /// A session for an account without its password (the Admin API's
    /// `OpenSession`, for operator tools). Unknown and disabled accounts are
    /// refused as a login would be.
    pub async fn open_session(&self, address: &str, purpose: &str) -> Result<String> {
        let address = parse_address(address)?;
        let account = match on_backend!(self, credentials(address.as_str()))? {
            Some(row) => AccountAuth::from_row(row),
            None => return Err(StoreError::NotFound("account")),
        };
        if account.disabled {
            return Err(StoreError::NotFound("account"));
        }
        let purpose = if purpose.is_empty() { "admin" } else { purpose };
        let token = self.new_session(&account, purpose, None)?;
        // An audit line: this session acts for the account without its
        // password.
        tracing::info!(account = %address, purpose, "admin session opened");
        Ok(token)
    }

    /// The account a session token belongs to: a token this cluster
    /// signed, not logged out here, of an account that still admits it
    /// (same session generation, enabled, its app password not revoked;
    /// from memory while trusted, see `auth_cache`), and not expired.
    pub async fn resolve_session(&self, token: &str) -> Result<AccountId> {
        let claims = self
            .inner
            .tokens
            .verify(token)
            .ok_or(StoreError::BadSession)?;
        let digest = token_digest(token);
        if self.inner.auth.ended(&digest) {
            return Err(StoreError::BadSession);
        }
        // Memory only admits: a refusal is read again, in case memory is
        // behind (an app password added, an account enabled again).
        let admitted = match self
            .inner
            .auth
            .account(claims.account, crate::auth_cache::SESSION_TRUST)
        {
            Some(a) if a.admits(&claims) => true,
            _ => self
                .read_account_auth(claims.account)
                .await?
                .is_some_and(|a| a.admits(&claims)),
        };
        if !admitted {
            return Err(StoreError::BadSession);
        }
        self.session_expiry(&claims, &digest).await?;
        Ok(AccountId(claims.account))
    }

    /// A token's expiry, sliding: a session in use never expires, one
    /// unused for `session_ttl` does. A token carries the expiry it was
    /// issued with; once less than half its lifetime is left at a call,
    /// the expiry is renewed in the database (a row of `sessions`, one
    /// write per half lifetime of a long session; a session younger than
    /// that writes nothing). Past its own expiry a token lives on only by
    /// its renewal, read from the database unless this replica made or
    /// saw it.
    async fn session_expiry(
        &self,
        claims: &crate::session_token::Claims,
        digest: &[u8; 32],
    ) -> Result<()> {
        let now = crate::model::now();
        let ttl = self.inner.settings.session_ttl.as_secs() as i64;
        let auth = &self.inner.auth;
        let hash = hex::encode(digest);
        let mut until = claims.expires.max(auth.renewed(digest).unwrap_or(i64::MIN));
        if until <= now {
            // Renewed on another replica, perhaps.
            if let Some(e) = on_backend!(self, session_renewal(&hash))? {
                auth.remember_renewal(digest, e);
                until = until.max(e);
            }
            if until <= now {
                return Err(StoreError::BadSession);
            }
        }
        if until - now < ttl / 2 {
            let e = now + ttl;
            on_backend!(
                self,
                renew_session(&hash, claims.account, &claims.protocol, e)
            )?;
            auth.remember_renewal(digest, e);
        }
        Ok(())
    }

    /// Ends a session: nothing is written (its token would expire on its
    /// own; its account's generation ends it at once on every replica when
    /// the account changes). This replica refuses the token from now on.
    pub async fn logout(&self, token: &str) -> Result<()> {
        let claims = self
            .inner
            .tokens
            .verify(token)
            .ok_or(StoreError::BadSession)?;
        let digest = token_digest(token);
        // As long as it could live: its own expiry, or a renewal made
        // elsewhere (at most a lifetime from now).
        let ttl = self.inner.settings.session_ttl.as_secs() as i64;
        let until = claims.expires.max(crate::model::now() + ttl);
        self.inner.auth.end(&digest, until);
        Ok(())
    }

    /// Checks a password against its PHC string on the argon2 threads.
    async fn verify_password(&self, password: &str, hash: &str) -> bool {
        if password.len() > MAX_PASSWORD {
            return false;
        }
        let (pw, hash) = (password.to_string(), hash.to_string());
        self.inner
            .argon2
            .run(move || crate::argon2_pool::reuse::verify(pw.as_bytes(), &hash))
            .await
            .unwrap_or(false)
    }

    /// A new PHC string for a password, made on the argon2 threads.
    pub(super) async fn hash_password(&self, password: &str) -> Result<String> {
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err(StoreError::Invalid(format!(
                "password must be 1 to {MAX_PASSWORD} bytes"
            )));
        }
        let pw = password.to_string();
        self.inner
            .argon2
            .run(move || {
                crate::argon2_pool::reuse::hash(pw.as_bytes())
                    .map_err(|e| StoreError::Internal(format!("argon2: {e}")))
            })
            .await
            .ok_or_else(|| StoreError::Internal("argon2 threads stopped".into()))?
    }
}
