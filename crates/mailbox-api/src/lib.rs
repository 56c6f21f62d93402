//! The gRPC contract of mailbox-store (`proto/mailbox/v1`), generated with
//! tonic/prost, plus what every caller needs around it: the metadata that
//! authenticates a call ([`CallAuth`]), the channel to the store replicas
//! ([`channel`], balanced and retried over every replica `store_url`
//! names), and conversions between protobuf messages and the domain types.

pub mod balance;
pub mod convert;
mod retry;
pub mod sasl;
pub mod store_url;
pub mod tls;

pub use balance::StoreChannel;
pub use store_url::{StoreTarget, StoreUrlError, parse_store_url};

/// Generated protobuf messages and tonic clients/servers.
#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("mailbox.v1");
}

use std::str::FromStr;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

/// Metadata key carrying the calling service's shared secret.
pub const SERVICE_TOKEN_KEY: &str = "x-service-token";
/// Metadata key carrying the account-scoped session token (`Bearer <token>`).
pub const AUTHORIZATION_KEY: &str = "authorization";

/// A client channel wrapped so that every call carries [`CallAuth`].
pub type AuthChannel = InterceptedService<StoreChannel, CallAuth>;
pub type MailboxClient = pb::mailbox_client::MailboxClient<AuthChannel>;
pub type DeliveryClient = pb::delivery_client::DeliveryClient<AuthChannel>;
pub type AdminClient = pb::admin_client::AdminClient<AuthChannel>;
/// The account's Sieve scripts (ManageSieve, `mailctl sieve`).
pub type SieveClient = pb::sieve_client::SieveClient<AuthChannel>;

/// The credentials a call presents to the store: the service secret (when the
/// store requires one) and, for Mailbox calls, the session token.
#[derive(Clone, Default)]
pub struct CallAuth {
    service_token: Option<AsciiMetadataValue>,
    bearer: Option<AsciiMetadataValue>,
}

impl std::fmt::Debug for CallAuth {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallAuth")
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "<redacted>"),
            )
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A secret that cannot be sent as gRPC metadata.
#[derive(Debug, thiserror::Error)]
#[error("credential contains characters not allowed in gRPC metadata")]
pub struct InvalidCredential;

impl CallAuth {
    pub fn new(service_token: Option<&str>) -> Result<Self, InvalidCredential> {
        let service_token = service_token
            .map(|t| AsciiMetadataValue::from_str(t).map_err(|_| InvalidCredential))
            .transpose()?;
        Ok(Self {
            service_token,
            bearer: None,
        })
    }

    /// The same service credential, plus an account session token.
    pub fn with_session(&self, token: &str) -> Result<Self, InvalidCredential> {
        let bearer = AsciiMetadataValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| InvalidCredential)?;
        Ok(Self {
            service_token: self.service_token.clone(),
            bearer: Some(bearer),
        })
    }

    fn apply(&self, md: &mut MetadataMap) {
        if let Some(t) = &self.service_token {
            md.insert(SERVICE_TOKEN_KEY, t.clone());
        }
        if let Some(b) = &self.bearer {
            md.insert(AUTHORIZATION_KEY, b.clone());
        }
        inject_trace_context(md);
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl opentelemetry::propagation::Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Carries the caller's W3C trace context (`traceparent`) to the store, so
/// one delivery is one trace across services.
fn inject_trace_context(md: &mut MetadataMap) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(md))
    });
}

impl Interceptor for CallAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.apply(req.metadata_mut());
        Ok(req)
    }
}

/// Largest gRPC message either side accepts. Bodies travel in chunks far
/// smaller than this; the margin is for metadata batches.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// Size of the body chunks callers should send.
pub const CHUNK_SIZE: usize = 256 * 1024;
/// Messages up to this size come inline with Fetch (`with_data`).
pub const INLINE_DATA_LIMIT: u64 = 256 * 1024;

/// The channel to the store replicas that `store_url` names: one
/// `http(s)://host:port` URL (one replica, as before), or a comma-separated
/// list of such URLs and `dns:///NAME:PORT` names (every address the name
/// resolves to, resolved again every few seconds: a Kubernetes headless
/// Service). Calls are spread over the replicas that are up and retried on
/// another when that is safe (see [`balance`]). Connections are made lazily:
/// calls fail with `UNAVAILABLE` while no replica answers and succeed
/// again once one is back. Needs a Tokio runtime.
pub fn channel(store_url: &str) -> Result<StoreChannel, StoreUrlError> {
    Ok(StoreChannel::new(parse_store_url(store_url)?))
}

/// Why a channel to the store could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Url(#[from] StoreUrlError),
    #[error(transparent)]
    Tls(#[from] tls::StoreTlsError),
}

/// As [`channel`], with client TLS to every replica when `tls` is set
/// (`store_tls_ca`, `store_tls_cert`, `store_tls_key`: the store's
/// certificate is checked against the host named in `store_url`, and the
/// client certificate is presented for mutual TLS). The files are read
/// now: a missing or unreadable one is an error at start.
pub fn channel_with_tls(
    store_url: &str,
    tls: Option<&tls::StoreTls>,
) -> Result<StoreChannel, ChannelError> {
    Ok(StoreChannel::with_tls(
        parse_store_url(store_url)?,
        tls.cloned(),
    )?)
}

pub fn mailbox_client(channel: StoreChannel, auth: CallAuth) -> MailboxClient {
    pb::mailbox_client::MailboxClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

pub fn delivery_client(channel: StoreChannel, auth: CallAuth) -> DeliveryClient {
    pb::delivery_client::DeliveryClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

pub fn admin_client(channel: StoreChannel, auth: CallAuth) -> AdminClient {
    pb::admin_client::AdminClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// A client of the Sieve service; `auth` carries the session token of
/// the account whose scripts it manages.
pub fn sieve_client(channel: StoreChannel, auth: CallAuth) -> SieveClient {
    pb::sieve_client::SieveClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// Whether a call that failed with `code` may have been lost in transit (a
/// store replica gone or a connection cut mid-call, which the transport
/// reports as UNAVAILABLE, UNKNOWN, INTERNAL or CANCELLED) rather than
/// refused by the store: a caller whose write is safe to repeat (an
/// APPEND under its idempotency key, POP3's deletions under its lease)
/// sends it again.
pub fn failed_in_transit(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
    )
}

/// How many times, in all, a gateway makes a call that may be repeated
/// when it is lost in transit (see [`failed_in_transit`]): a read whose
/// answer stream broke half way, or a write that done twice is done once.
/// The balancer sends each try to a replica that is up.
pub const TRANSIT_TRIES: u32 = 3;

/// Makes `call` until it succeeds, fails for a reason other than transit
/// ([`failed_in_transit`]), or has been made [`TRANSIT_TRIES`] times; only
/// for calls whose repetition changes nothing. `what` names the call in
/// the debug log of each repeat.
pub async fn again_in_transit<T, F, Fut>(what: &str, mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match call().await {
            Err(s) if tries < TRANSIT_TRIES && failed_in_transit(s.code()) => {
                tracing::debug!(error = %s, "{what} lost in transit; asking again");
            }
            r => return r,
        }
    }
}

/// Whether the store answers `grpc.health.v1` with SERVING (its database
/// reachable) on some replica: the gateways' and ingest's readiness.
pub async fn store_serving(channel: StoreChannel) -> bool {
    balance::serving(channel).await
}
