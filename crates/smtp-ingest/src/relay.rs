//! The outbox relay: sends the messages Sieve wrote into the store's
//! outbox (vacation replies, redirects, bounces) to the configured relay
//! host, as the design's section 7 asks: no queue of our own, the outbox
//! table is the queue, and every smtp-ingest replica runs this loop.
//!
//! Each turn leases a batch of due rows (`ClaimOutbox`: row locks, so two
//! replicas never hold the same row while a lease lasts), sends each row
//! over SMTP (RFC 5321: MAIL FROM the row's sender, RCPT TO its recipient,
//! DATA), then completes it (`CompleteOutbox`) or fails it (`FailOutbox`):
//!
//! - a temporary failure (a 4xx reply, a refused or broken connection, a
//!   TLS failure, a timeout) is retried after an exponential backoff
//!   (`relay_retry_base_secs` doubling up to `relay_retry_max_secs`), until
//!   the row is older than `relay_expire_secs`: then it is dropped, with a
//!   log line;
//! - a permanent refusal (a 5xx reply, or an address the client cannot
//!   write) drops the row, with a log line.
//!
//! When a redirect with a sender is dropped (refused or expired), the
//! store writes a bounce for it to that sender into the outbox (RFC 5321
//! 6.1: the message was accepted, its loss is reported). Vacation replies
//! and bounces have the null sender and are dropped silently, so no loop
//! can start between two auto-responders.
//!
//! The SMTP client is `lettre` (STARTTLS with rustls on ring, AUTH PLAIN);
//! plaintext is allowed only to a relay on the loopback interface (checked
//! when the config is read).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mailbox_api::{CallAuth, DeliveryClient, StoreChannel, pb};
use service_kit::CancellationToken;

/// Whether the relay connection must be encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// STARTTLS, with the relay's certificate verified; a relay that does
    /// not offer it is a temporary failure.
    Required,
    /// Plaintext: allowed only to a relay on the loopback interface.
    None,
}

/// A secret that `Debug` never prints.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The validated relay settings (see `SmtpConfig`'s `relay_*` keys).
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// Host name or IP address of the relay.
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    /// Extra PEM certificates to trust beside the Mozilla roots (a private
    /// relay's CA).
    pub ca_pem: Option<Vec<u8>>,
    /// AUTH PLAIN user and password, when the relay wants a login.
    pub credentials: Option<(String, Secret)>,
    /// The first retry's delay; doubled on each failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// A row older than this is dropped instead of retried.
    pub expire: Duration,
    /// One SMTP transaction (connect to the end of DATA) at most.
    pub timeout: Duration,
    /// Rows leased per claim.
    pub batch: u32,
    /// How long to wait before asking again when nothing was due.
    pub poll: Duration,
}

impl RelaySettings {
    /// The delay before the next attempt after `attempts` failed ones
    /// (this failure included): base, 2 x base, 4 x base ... capped.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(factor)
            .min(self.retry_max)
            .max(Duration::from_secs(1))
    }

    /// How long the rows of one claim are leased: long enough to send the
    /// whole batch at the timeout of each and to report the last result to
    /// a slow store, with a margin, within the store's cap of an hour.
    fn lease(&self) -> Duration {
        (self.timeout.saturating_mul(self.batch) + SETTLE_RETRY + Duration::from_secs(30))
            .min(Duration::from_secs(3600))
    }
}

/// Whether `host` names the loopback interface (where plaintext is fine).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What became of one send.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Sent,
    /// Retry later; the reason for the log.
    Temporary(String),
    /// Never retry; the reason for the log.
    Permanent(String),
}

/// The relay loop of one replica.
pub(crate) struct Relay {
    settings: RelaySettings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    store: DeliveryClient,
    /// This replica's lease owner name.
    owner: String,
}

impl Relay {
    /// Builds the SMTP client (its TLS parameters are checked here).
    pub(crate) fn new(
        settings: RelaySettings,
        hostname: &str,
        channel: StoreChannel,
        auth: CallAuth,
    ) -> anyhow::Result<Self> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .timeout(Some(settings.timeout))
            .hello_name(ClientId::Domain(hostname.to_string()));
        b = match settings.tls {
            RelayTls::None => b.tls(Tls::None),
            RelayTls::Required => {
                let mut p = TlsParameters::builder(settings.host.clone());
                if let Some(pem) = &settings.ca_pem {
                    p = p.add_root_certificate(Certificate::from_pem(pem).map_err(|e| {
                        anyhow::anyhow!("relay_tls_ca: not a PEM certificate: {e}")
                    })?);
                }
                b.tls(Tls::Required(p.build_rustls()?))
            }
        };
        if let Some((user, password)) = &settings.credentials {
            b = b
                .credentials(Credentials::new(user.clone(), password.0.clone()))
                .authentication(vec![Mechanism::Plain]);
        }
        Ok(Self {
            transport: b.build(),
            store: mailbox_api::delivery_client(channel, auth),
            owner: format!(
                "smtp-ingest-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            settings,
        })
    }

    /// Claims, sends and settles until `shutdown` fires. A store that does
    /// not answer is asked again after the poll interval; nothing here
    /// ends the loop but the shutdown.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(
            relay = %self.settings.host,
            port = self.settings.port,
            tls = ?self.settings.tls,
            owner = %self.owner,
            "relaying the outbox"
        );
        let mut store_down = false;
        while !shutdown.is_cancelled() {
            let full = match self.turn(&shutdown).await {
                Ok(full) => {
                    if store_down {
                        tracing::info!("outbox: the store answers again");
                        store_down = false;
                    }
                    full
                }
                Err(e) => {
                    if !store_down {
                        tracing::warn!(error = %e, "outbox: the store did not answer; asking again");
                        store_down = true;
                    }
                    false
                }
            };
            if !full {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(self.settings.poll) => {}
                }
            }
        }
    }

    /// One claim and its sends; true when the claim was full (more may be
    /// due at once).
    async fn turn(&self, shutdown: &CancellationToken) -> Result<bool, tonic::Status> {
        let lease = self.settings.lease();
        let claimed_at = Instant::now();
        let claim = self
            .store
            .clone()
            .claim_outbox(pb::ClaimOutboxRequest {
                owner: self.owner.clone(),
                limit: self.settings.batch,
                lease_secs: u32::try_from(lease.as_secs()).unwrap_or(3600),
            })
            .await?
            .into_inner();
        service_kit::metrics::outbox_depth(claim.depth);
        let full = claim.messages.len() >= self.settings.batch as usize;
        for row in claim.messages {
            // A row whose lease could run out during its send is left for
            // the lease to expire (due again for any replica), so no other
            // replica can send it while this one still might.
            if shutdown.is_cancelled()
                || claimed_at.elapsed()
                    + self.settings.timeout
                    + SETTLE_RETRY
                    + Duration::from_secs(10)
                    > lease
            {
                break;
            }
            let outcome = self.send(&row).await;
            self.settle(&row, outcome).await?;
        }
        Ok(full)
    }

    /// One SMTP transaction for one row.
    async fn send(&self, row: &pb::OutboxMessage) -> Outcome {
        let envelope = match envelope(&row.mail_from, &row.rcpt_to) {
            Ok(e) => e,
            Err(e) => return Outcome::Permanent(e),
        };
        // lettre's own timeout bounds only the TCP connect: a relay that
        // accepts and then never answers would hold this loop past the
        // lease, and another replica would send the row again. The whole
        // transaction is bounded here; its expiry is a temporary failure.
        match tokio::time::timeout(
            self.settings.timeout,
            self.transport.send_raw(&envelope, &row.data),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) if e.is_permanent() => Outcome::Permanent(e.to_string()),
            Ok(Err(e)) => Outcome::Temporary(e.to_string()),
            Err(_) => Outcome::Temporary(format!(
                "no answer from the relay within {} s",
                self.settings.timeout.as_secs()
            )),
        }
    }

    /// Tells the store what became of a row, and logs and counts it.
    async fn settle(&self, row: &pb::OutboxMessage, outcome: Outcome) -> Result<(), tonic::Status> {
        let span = (row.id, row.kind.as_str(), row.delivery_id.as_str());
        match outcome {
            Outcome::Sent => {
                self.tell(Settle::Complete(pb::CompleteOutboxRequest {
                    owner: self.owner.clone(),
                    id: row.id,
                }))
                .await?;
                tracing::info!(id = span.0, kind = span.1, delivery = span.2, to = %row.rcpt_to, "outbox message sent");
                service_kit::metrics::outbox_send("sent");
            }
            Outcome::Permanent(why) => {
                // The store bounces a dropped redirect to its sender; see
                // the module docs.
                tracing::warn!(id = span.0, kind = span.1, delivery = span.2, to = %row.rcpt_to, error = %why, "outbox message refused by the relay; dropped");
                self.tell(Settle::Fail(pb::FailOutboxRequest {
                    owner: self.owner.clone(),
                    id: row.id,
                    error: why,
                    retry_after_secs: 0,
                    drop: true,
                }))
                .await?;
                service_kit::metrics::outbox_send("refused");
            }
            Outcome::Temporary(why) => {
                let age = time::OffsetDateTime::now_utc().unix_timestamp() - row.created_at;
                let expired =
                    age >= i64::try_from(self.settings.expire.as_secs()).unwrap_or(i64::MAX);
                let attempts = row.attempts.saturating_add(1);
                let retry = self.settings.backoff(attempts);
                if expired {
                    tracing::warn!(id = span.0, kind = span.1, delivery = span.2, to = %row.rcpt_to, attempts, age_secs = age, error = %why, "outbox message expired; dropped");
                } else {
                    tracing::info!(id = span.0, kind = span.1, to = %row.rcpt_to, attempts, retry_secs = retry.as_secs(), error = %why, "outbox message not sent; retrying later");
                }
                self.tell(Settle::Fail(pb::FailOutboxRequest {
                    owner: self.owner.clone(),
                    id: row.id,
                    error: why,
                    retry_after_secs: u32::try_from(retry.as_secs()).unwrap_or(u32::MAX),
                    drop: expired,
                }))
                .await?;
                service_kit::metrics::outbox_send(if expired { "expired" } else { "failed" });
            }
        }
        Ok(())
    }

    /// Sends a settlement to the store, retried for a while when the
    /// store does not answer: a sent row whose completion were lost would
    /// be sent again once its lease ran out.
    async fn tell(&self, what: Settle) -> Result<(), tonic::Status> {
        let deadline = Instant::now() + SETTLE_RETRY;
        let mut pause = Duration::from_millis(250);
        loop {
            let mut store = self.store.clone();
            let r = match &what {
                Settle::Complete(req) => store.complete_outbox(req.clone()).await.map(|_| ()),
                Settle::Fail(req) => store.fail_outbox(req.clone()).await.map(|_| ()),
            };
            match r {
                Err(s) if transient(&s) && Instant::now() + pause < deadline => {
                    tracing::warn!(code = ?s.code(), "outbox: the store did not take a result; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(4));
                }
                r => return r,
            }
        }
    }
}

/// How long a row's result is offered to a store that does not answer.
const SETTLE_RETRY: Duration = Duration::from_secs(30);

/// A row's result for the store.
enum Settle {
    Complete(pb::CompleteOutboxRequest),
    Fail(pb::FailOutboxRequest),
}

/// Store errors worth asking again (the store or its database is away).
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::Cancelled
    )
}

/// The SMTP envelope of a row: the null reverse-path when `from` is empty.
fn envelope(from: &str, to: &str) -> Result<lettre::address::Envelope, String> {
    let from = if from.is_empty() {
        None
    } else {
        Some(
            from.parse::<Address>()
                .map_err(|e| format!("sender {from:?}: {e}"))?,
        )
    };
    let to = to
        .parse::<Address>()
        .map_err(|e| format!("recipient {to:?}: {e}"))?;
    lettre::address::Envelope::new(from, vec![to]).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings() -> RelaySettings {
        RelaySettings {
            host: "127.0.0.1".into(),
            port: 25,
            tls: RelayTls::None,
            ca_pem: None,
            credentials: None,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            expire: Duration::from_secs(5 * 86_400),
            timeout: Duration::from_secs(60),
            batch: 10,
            poll: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let s = settings();
        let got: Vec<u64> = (1..=9).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(s.backoff(0).as_secs(), 60);
        assert_eq!(s.backoff(u32::MAX).as_secs(), 3600);
    }

    #[test]
    fn the_lease_covers_a_batch_within_the_store_cap() {
        let mut s = settings();
        assert_eq!(s.lease(), Duration::from_secs(660));
        s.batch = 100;
        assert_eq!(s.lease(), Duration::from_secs(3600));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "relay.example.com",
            "10.0.0.1",
            "192.0.2.1",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn envelopes_with_and_without_a_sender() {
        let e = envelope("", "bob@example.org").unwrap();
        assert!(e.from().is_none());
        let e = envelope("alice@example.org", "bob@example.org").unwrap();
        assert_eq!(e.from().unwrap().to_string(), "alice@example.org");
        assert!(envelope("alice@example.org", "not an address").is_err());
        assert!(envelope("broken", "bob@example.org").is_err());
    }
}
