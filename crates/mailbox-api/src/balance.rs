//! Client-side balancing over the store replicas (DESIGN.md 7): HTTP/2
//! keeps every call of a connection on one pod, so a Kubernetes Service in
//! front of the store balances nothing and loses every session with the
//! pod. [`StoreChannel`] holds one tonic [`Channel`] per replica instead
//! and sends each call to the next replica that is up (round robin).
//!
//! - **Which replicas**: the `store_url` entries ([`crate::store_url`]);
//!   `dns:///NAME:PORT` names are resolved again every
//!   [`RESOLVE_INTERVAL`], so the pods of a headless Service are followed
//!   as they come and go.
//! - **Which are up**: a replica whose connection fails is taken out at
//!   once; with more than one replica, the ones out are asked
//!   `grpc.health.v1` Check every [`PROBE_INTERVAL`] and put back when
//!   they answer SERVING, and the ones in are asked every
//!   [`PROBE_LIVE_INTERVAL`] (a replica whose database is gone answers
//!   NOT_SERVING and is taken out). When none is up, every replica is
//!   tried, so a call fails with UNAVAILABLE only when none answers.
//! - **Retries**: a call that could not reach its replica goes to the
//!   next one, each at most once: always when the request provably never
//!   left (no connection, refused stream, not processed before a GOAWAY,
//!   request body never read), and also when the connection broke before
//!   a response header for RPCs that are safe to send twice
//!   ([`crate::retry`]). One-message requests are buffered for that;
//!   client streams (Deliver, Append) never are.
//!
//! A response stream already under way (Watch, Fetch) is not moved: when
//! its replica dies the caller sees the stream end with an error and opens
//! it again (imap-gateway's shared views resync by MODSEQ).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response, Uri};
use tonic::codegen::{Bytes, StdError};
use tonic::transport::{Channel, Endpoint};
use tower::ServiceExt as _;

use crate::retry::{self, Failure};
use crate::store_url::StoreTarget;
use crate::tls::{StoreTls, StoreTlsError};

/// How often `dns:///` names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(5);
/// How often a replica taken out is asked whether it serves again.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How often a replica in use is asked whether it still serves.
pub const PROBE_LIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The longest a health check may take before the replica counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a call waits for the first resolution of the `dns:///`
/// names (only calls made right after start).
const FIRST_RESOLUTION_WAIT: Duration = Duration::from_secs(5);
/// The longest one DNS lookup may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest HTTP/2 frame a store replica may send us (SETTINGS_MAX_FRAME_SIZE,
/// RFC 9113 6.5.2; 16 KiB unless set). Message bodies come back in
/// responses of up to megabytes (a POP3 read-ahead, a FETCH of bodies):
/// in 16 KiB frames each costs a `writev` on the store and one or two
/// `recvfrom` here per 16 KiB; 256 KiB frames cut those calls about ten
/// times (issue #24's profile: the POP3 gateway's CPU per message down
/// by a quarter), while a frame still takes well under a millisecond to
/// send, so small calls sharing the connection wait little behind it.
const MAX_FRAME_SIZE: u32 = 256 * 1024;

/// The per-replica endpoint: the one place where a connection to a store
/// replica is configured (timeouts, keep-alive). Client TLS to the store
/// (`crate::tls::apply`: CA, client certificate for mutual TLS) belongs
/// here too, applied to every replica alike. For `dns:///` entries `uri`
/// holds the resolved address (`http://10.1.2.3:50051`); the name a
/// certificate is checked against is [`Replica::new`]'s `server_name`
/// (the `dns:///` name, or the URL's host), which calls this.
fn replica_endpoint(
    uri: Uri,
    server_name: &str,
    tls: Option<&StoreTls>,
) -> Result<Endpoint, StoreTlsError> {
    let uri = match tls {
        // TLS is asked for by the settings, whatever scheme the URL has.
        Some(_) if uri.scheme_str() != Some("https") => {
            let mut parts = uri.into_parts();
            parts.scheme = Some(tonic::codegen::http::uri::Scheme::HTTPS);
            Uri::from_parts(parts).map_err(|e| StoreTlsError::Uri(e.to_string()))?
        }
        _ => uri,
    };
    let endpoint = Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .max_frame_size(MAX_FRAME_SIZE);
    match tls {
        Some(tls) => crate::tls::apply(endpoint, tls, server_name),
        None => Ok(endpoint),
    }
}

/// A client channel to every store replica that `store_url` names, cheap
/// to clone; a tower service over `http::Request<tonic::body::Body>`, so
/// the generated clients take it as they take a tonic `Channel` (see the
/// module documentation for how calls are spread and retried).
#[derive(Clone)]
pub struct StoreChannel {
    inner: Arc<Balancer>,
    /// A session's own turn (see [`StoreChannel::pinned`]): its calls start
    /// at the same replica while the replicas that are up stay the same.
    /// `None`: each call takes the next turn.
    turn: Option<usize>,
}

impl std::fmt::Debug for StoreChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreChannel")
            .field("targets", &self.inner.targets)
            .field("replicas", &self.replica_states())
            .finish()
    }
}

struct Balancer {
    targets: Vec<StoreTarget>,
    /// Client TLS (mutual, with a certificate) to every replica; `None`:
    /// plaintext h2c.
    tls: Option<StoreTls>,
    /// The replicas now known (static ones first, then resolved ones).
    replicas: RwLock<Arc<[Arc<Replica>]>>,
    /// The round-robin position.
    next: AtomicUsize,
    /// The next session's turn (`StoreChannel::pinned`): a counter of its
    /// own, so that sessions take the replicas evenly in turn.
    pins: AtomicUsize,
    /// True once the `dns:///` names were resolved (at once without any).
    resolved: tokio::sync::watch::Sender<bool>,
}

struct Replica {
    /// `http://host:port`: its identity and its name in logs.
    key: String,
    /// The host name it was reached by: the `dns:///` name it was
    /// resolved from, or the URL's host.
    server_name: String,
    channel: Channel,
    up: AtomicBool,
}

impl Replica {
    fn new(
        uri: Uri,
        server_name: &str,
        tls: Option<&StoreTls>,
    ) -> Result<Arc<Self>, StoreTlsError> {
        Ok(Arc::new(Self {
            key: uri.to_string().trim_end_matches('/').to_string(),
            server_name: server_name.to_string(),
            channel: replica_endpoint(uri, server_name, tls)?.connect_lazy(),
            up: AtomicBool::new(true),
        }))
    }

    fn take_out(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                replica = %self.key,
                name = %self.server_name,
                error = %why,
                "store replica taken out"
            );
        }
    }

    fn put_back(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            tracing::info!(
                replica = %self.key,
                name = %self.server_name,
                "store replica back in use"
            );
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

impl StoreChannel {
    /// A channel over `targets` (see [`crate::channel`], which parses
    /// `store_url` into them). Connections are made lazily; with `dns:///`
    /// entries or several replicas a task (on the current Tokio runtime,
    /// which must exist) resolves and checks them while any clone of the
    /// channel lives.
    pub fn new(targets: Vec<StoreTarget>) -> Self {
        match Self::with_tls(targets, None) {
            Ok(c) => c,
            // Without TLS an endpoint is only timeouts: nothing can fail.
            Err(e) => unreachable!("plaintext endpoint: {e}"),
        }
    }

    /// As [`StoreChannel::new`], speaking TLS to every replica with `tls`
    /// (the store's certificate checked against the configured host name,
    /// the client certificate presented for mutual TLS). An unreadable CA,
    /// certificate or key is an error here, at start.
    pub fn with_tls(
        targets: Vec<StoreTarget>,
        tls: Option<StoreTls>,
    ) -> Result<Self, StoreTlsError> {
        let mut fixed: Vec<Arc<Replica>> = Vec::new();
        for t in &targets {
            if let StoreTarget::Url(u) = t {
                fixed.push(Replica::new(
                    u.clone(),
                    u.host().unwrap_or_default(),
                    tls.as_ref(),
                )?);
            }
        }
        let has_dns = fixed.len() < targets.len();
        let (resolved, _) = tokio::sync::watch::channel(!has_dns);
        let needs_task = has_dns || fixed.len() > 1;
        let inner = Arc::new(Balancer {
            targets,
            tls,
            replicas: RwLock::new(fixed.into()),
            next: AtomicUsize::new(0),
            pins: AtomicUsize::new(0),
            resolved,
        });
        if needs_task {
            tokio::spawn(maintain(Arc::downgrade(&inner), has_dns));
        }
        Ok(Self { inner, turn: None })
    }

    /// The same channel for one client session: its calls all start at
    /// one replica (the sessions of a gateway taking the replicas in turn),
    /// so a session's writes and the changes its views watch meet in one
    /// store process (told in memory, not through the database's change
    /// feed) and its token is cached where it was made. When that replica
    /// is taken out, the session's calls go to the next one up.
    pub fn pinned(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            turn: Some(self.inner.pins.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// The same channel for the calls about one mailbox (a delivery, by
    /// its first recipient): every caller naming the same key, in any
    /// process of the same build, starts at the same replica while the
    /// replicas up stay the same. The deliveries of one mailbox then meet
    /// in one store's group commit (one transaction and one WAL flush for
    /// many) instead of queueing between replicas on the mailbox's row
    /// lock, each holding it through its own commit. When that replica is
    /// taken out, the next one up.
    pub fn keyed(&self, key: &[u8]) -> Self {
        // FNV-1a: stable across processes and versions, unlike std's
        // hashers; the spread over a few replicas is all it must give.
        let hash = key.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Self {
            inner: self.inner.clone(),
            turn: Some((hash >> 16) as usize),
        }
    }

    /// Every replica now known and whether it is in use, as
    /// (`http://host:port`, up): for tests and diagnostics.
    pub fn replica_states(&self) -> Vec<(String, bool)> {
        self.inner
            .snapshot()
            .iter()
            .map(|r| (r.key.clone(), r.is_up()))
            .collect()
    }
}

impl Balancer {
    fn snapshot(&self) -> Arc<[Arc<Replica>]> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The replicas to try for one call, in order: those up, starting at
    /// the round-robin position, then those taken out (a call that every
    /// replica in use refused may still find one that came back before
    /// its next health check: a rolling restart moves faster than the
    /// checks).
    fn candidates(&self, turn: Option<usize>) -> Vec<Arc<Replica>> {
        let all = self.snapshot();
        let (live, out): (Vec<&Arc<Replica>>, Vec<&Arc<Replica>>) =
            all.iter().partition(|r| r.is_up());
        let turn = turn.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed));
        let mut order = Vec::with_capacity(all.len());
        for group in [live, out] {
            if group.is_empty() {
                continue;
            }
            let start = turn % group.len();
            order.extend((0..group.len()).map(|i| group[(start + i) % group.len()].clone()));
        }
        order
    }

    /// Resolves the `dns:///` names and updates the replica set: addresses
    /// that appeared are added, those gone are removed. When a lookup
    /// fails, nothing is removed.
    async fn resolve(&self) {
        // (http://address:port, the name it was resolved from)
        let mut found: Vec<(String, &str)> = Vec::new();
        let mut complete = true;
        for t in &self.targets {
            let StoreTarget::Dns { name, port } = t else {
                continue;
            };
            match tokio::time::timeout(
                RESOLVE_TIMEOUT,
                tokio::net::lookup_host((name.as_str(), *port)),
            )
            .await
            {
                Ok(Ok(addrs)) => {
                    let mut addrs: Vec<_> = addrs.collect();
                    addrs.sort();
                    found.extend(
                        addrs
                            .into_iter()
                            .map(|a| (format!("http://{a}"), name.as_str())),
                    );
                }
                Ok(Err(e)) => {
                    complete = false;
                    tracing::warn!(target = %t, error = %e, "resolving the store failed");
                }
                Err(_) => {
                    complete = false;
                    tracing::warn!(target = %t, "resolving the store timed out");
                }
            }
        }
        let old = self.snapshot();
        let mut next: Vec<Arc<Replica>> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // Fixed URLs first, as configured.
        for t in &self.targets {
            if let StoreTarget::Url(u) = t {
                let key = u.to_string().trim_end_matches('/').to_string();
                if let Some(r) = old.iter().find(|r| r.key == key)
                    && seen.insert(key)
                {
                    next.push(r.clone());
                }
            }
        }
        for (key, name) in found {
            if !seen.insert(key.clone()) {
                continue;
            }
            match old.iter().find(|r| r.key == key) {
                Some(r) => next.push(r.clone()),
                None => match key.parse::<Uri>() {
                    Ok(uri) => match Replica::new(uri, name, self.tls.as_ref()) {
                        Ok(r) => next.push(r),
                        // The files are read again at the next resolution.
                        Err(e) => tracing::error!(%key, error = %e, "store replica left out"),
                    },
                    Err(e) => tracing::warn!(%key, error = %e, "unusable resolved address"),
                },
            }
        }
        if !complete {
            for r in old.iter() {
                if seen.insert(r.key.clone()) {
                    next.push(r.clone());
                }
            }
        }
        let changed =
            next.len() != old.len() || next.iter().zip(old.iter()).any(|(a, b)| a.key != b.key);
        if changed {
            let keys: Vec<&str> = next.iter().map(|r| r.key.as_str()).collect();
            tracing::info!(replicas = ?keys, "store replicas changed");
            *self.replicas.write().unwrap_or_else(|p| p.into_inner()) = next.into();
        }
        self.resolved.send_replace(true);
    }

    /// Health-checks the replicas that are out (and, when `live`, those
    /// in), all at once, and takes out or puts back each by its answer.
    async fn probe(&self, live: bool) {
        let all = self.snapshot();
        if all.len() < 2 {
            // Nothing to move calls to: calls themselves find out.
            return;
        }
        let checks = all
            .iter()
            .filter(|r| live || !r.is_up())
            .map(|r| async move {
                let ok = tokio::time::timeout(PROBE_TIMEOUT, serving(r.channel.clone()))
                    .await
                    .unwrap_or(false);
                if ok {
                    r.put_back();
                } else {
                    r.take_out(&"health check failed or not SERVING");
                }
            });
        futures::future::join_all(checks).await;
    }
}

/// Resolves and checks the replicas while the balancer lives.
async fn maintain(balancer: Weak<Balancer>, has_dns: bool) {
    let resolve_every = (RESOLVE_INTERVAL.as_millis() / PROBE_INTERVAL.as_millis()).max(1);
    let live_every = (PROBE_LIVE_INTERVAL.as_millis() / PROBE_INTERVAL.as_millis()).max(1);
    let mut tick: u128 = 0;
    loop {
        {
            let Some(b) = balancer.upgrade() else {
                return;
            };
            if has_dns && tick.is_multiple_of(resolve_every) {
                b.resolve().await;
            }
            // The first round only resolves: every replica starts in use.
            if tick > 0 {
                b.probe(tick.is_multiple_of(live_every)).await;
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
        tick += 1;
    }
}

/// Whether the store behind `channel` answers `grpc.health.v1` Check with
/// SERVING.
pub(crate) async fn serving<T>(channel: T) -> bool
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
{
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut c = HealthClient::new(channel);
    match c
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().status() == ServingStatus::Serving,
        Err(_) => false,
    }
}

type Slot = Arc<Mutex<Option<Body>>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Body>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request body that takes its content out of a shared slot when first
/// read: if the slot still holds it after a failed call, no byte of the
/// request's messages left, and it can go to another replica.
struct TakeBody {
    slot: Slot,
    body: Option<Body>,
    taken: bool,
}

impl http_body::Body for TakeBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        if !this.taken {
            this.taken = true;
            this.body = lock(&this.slot).take();
            if this.body.is_none() {
                // Taken back after this attempt failed and sent elsewhere.
                return Poll::Ready(Some(Err(tonic::Status::cancelled(
                    "request sent to another store replica",
                ))));
            }
        }
        match this.body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

/// What is sent: the buffered message, or a client stream not yet sent.
enum Payload {
    Buffered(Bytes),
    Stream(Option<Body>),
}

impl tower::Service<Request<Body>> for StoreChannel {
    type Response = Response<Body>;
    type Error = StdError;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, StdError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each replica's channel is made ready inside the call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(call(self.inner.clone(), self.turn, req))
    }
}

async fn call(
    b: Arc<Balancer>,
    turn: Option<usize>,
    req: Request<Body>,
) -> Result<Response<Body>, StdError> {
    let (parts, body) = req.into_parts();
    let policy = retry::policy(parts.uri.path());
    let mut payload = if policy.single {
        // One message: collecting it costs no waiting, and keeps it for a
        // second try.
        Payload::Buffered(body.collect().await.map_err(StdError::from)?.to_bytes())
    } else {
        Payload::Stream(Some(body))
    };
    let resend_allowed = match &payload {
        Payload::Buffered(bytes) => policy.safe.allows_resend(bytes),
        Payload::Stream(_) => false,
    };
    if !*b.resolved.borrow() {
        let mut rx = b.resolved.subscribe();
        let _ = tokio::time::timeout(FIRST_RESOLUTION_WAIT, rx.wait_for(|done| *done)).await;
    }
    let candidates = b.candidates(turn);
    let mut last: Option<StdError> = None;
    for replica in candidates {
        let slot: Slot = Arc::new(Mutex::new(Some(match &mut payload {
            Payload::Buffered(bytes) => Body::new(http_body_util::Full::new(bytes.clone())),
            Payload::Stream(s) => match s.take() {
                Some(body) => body,
                None => break,
            },
        })));
        let attempt = Request::from_parts(
            parts.clone(),
            Body::new(TakeBody {
                slot: slot.clone(),
                body: None,
                taken: false,
            }),
        );
        match replica.channel.clone().oneshot(attempt).await {
            Ok(resp) => {
                replica.put_back();
                return Ok(resp);
            }
            Err(e) => {
                let failure = retry::classify(&e);
                let unsent = lock(&slot).take();
                let never_sent = unsent.is_some() || matches!(failure, Failure::NotSent { .. });
                if let Payload::Stream(s) = &mut payload {
                    *s = unsent;
                }
                match failure {
                    Failure::Deadline
                    | Failure::NotSent {
                        replica_down: false,
                    } => {}
                    _ => replica.take_out(&e),
                }
                let again = match failure {
                    Failure::Deadline => false,
                    _ => match &payload {
                        Payload::Buffered(_) => never_sent || resend_allowed,
                        Payload::Stream(s) => s.is_some(),
                    },
                };
                tracing::debug!(replica = %replica.key, error = %e, ?failure, again, path = %parts.uri.path(), "store call failed");
                last = Some(Box::new(e));
                if !again {
                    break;
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Box::new(tonic::Status::unavailable(
            "no store replica is known (store_url names none that resolve)",
        ))
    }))
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// The replica a keyed channel's calls start at.
    fn first(c: &StoreChannel, key: &str) -> String {
        let keyed = c.keyed(key.as_bytes());
        c.inner.candidates(keyed.turn)[0].key.clone()
    }

    #[tokio::test]
    async fn a_key_starts_at_one_replica_and_keys_spread_over_all() {
        let targets = crate::store_url::parse_store_url(
            "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
        )
        .expect("three replicas");
        let a = StoreChannel::new(targets.clone());
        // Another process of the same build (another smtp-ingest pod).
        let b = StoreChannel::new(targets);
        for _ in 0..5 {
            assert_eq!(first(&a, "bob@example.org"), first(&a, "bob@example.org"));
            assert_eq!(first(&a, "bob@example.org"), first(&b, "bob@example.org"));
        }
        let spread: std::collections::HashSet<String> = (0..60)
            .map(|i| first(&a, &format!("user{i}@example.org")))
            .collect();
        assert_eq!(spread.len(), 3, "{spread:?}");
    }
}
