//! The store's gRPC server: Delivery, Mailbox and Admin over [`Store`], plus
//! `grpc.health.v1`.
//!
//! Two checks guard every call. The calling *service* must present the
//! shared secret in `x-service-token` (when one is configured); the health
//! service is exempt so probes work. Every Mailbox call except Authenticate
//! must carry a session token, and the account it resolves to is the only
//! account the call can touch.
//!
//! With `grpc_tls_cert`/`grpc_tls_key` set the listener speaks only TLS
//! (HTTP/2 by ALPN `h2`), and with `grpc_tls_client_ca` only to callers
//! presenting a client certificate from that CA (mutual TLS; the shared
//! secret is checked as well). The files are reloaded when they change
//! (service-kit's `ReloadingTls`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mail_types::UidSetRanges;
use mailbox_api::pb::{self, admin_server, delivery_server, mailbox_server};
use mailbox_api::{AUTHORIZATION_KEY, CHUNK_SIZE, MAX_MESSAGE_SIZE, SERVICE_TOKEN_KEY};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::hub;
use crate::store::{AccountId, Store};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Entries per Select batch and metadata per Fetch batch.
const SELECT_BATCH: usize = 2048;
const FETCH_BATCH: usize = 128;
/// Inline message data per Fetch response message.
const FETCH_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// How often a Watch re-reads its mailbox even without a hint: a safety net
/// for notifications lost while a replica's listener reconnected.
const WATCH_POLL: Duration = Duration::from_secs(30);

/// Serves the store on `listener` until `shutdown` fires.
pub async fn serve(
    store: Store,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let check = ServiceCheck::new(store.settings().service_secret.as_deref());
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<mailbox_server::MailboxServer<MailboxSvc>>()
        .await;
    reporter
        .set_serving::<delivery_server::DeliveryServer<DeliverySvc>>()
        .await;
    reporter
        .set_serving::<admin_server::AdminServer<AdminSvc>>()
        .await;
    reporter
        .set_serving::<pb::sieve_server::SieveServer<crate::sieve_server::SieveSvc>>()
        .await;
    tokio::spawn(readiness(store.clone(), reporter, shutdown.clone()));

    let mailbox = mailbox_server::MailboxServer::new(MailboxSvc {
        store: store.clone(),
        shutdown: shutdown.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let delivery = delivery_server::DeliveryServer::new(DeliverySvc {
        store: store.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let admin = admin_server::AdminServer::new(AdminSvc {
        store: store.clone(),
    });
    let sieve = pb::sieve_server::SieveServer::new(crate::sieve_server::SieveSvc {
        store: store.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_MESSAGE_SIZE);

    let router = tonic::transport::Server::builder()
        .trace_fn(|req| {
            let span = tracing::info_span!(
                "grpc.server",
                rpc.method = %req.uri().path(),
                otel.kind = "server"
            );
            service_kit::telemetry::extract(req.headers(), &span);
            span
        })
        .layer(tower::layer::layer_fn(|inner| RpcTimer { inner }))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(health)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            mailbox,
            check.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            delivery,
            check.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            sieve,
            check.clone(),
        ))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            admin, check,
        ));
    match store.settings().grpc_tls.clone() {
        None => {
            router
                .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled())
                .await?
        }
        Some(files) => {
            let mutual = files.client_ca.is_some();
            let tls = service_kit::tls::ReloadingTls::start_with(files, shutdown.clone())
                .map_err(|e| anyhow::anyhow!("gRPC listener TLS: {e}"))?;
            tracing::info!(mutual, "gRPC listener speaks TLS only");
            router
                .serve_with_incoming_shutdown(
                    tls_incoming(listener, tls, shutdown.clone()),
                    shutdown.cancelled(),
                )
                .await?
        }
    }
    Ok(())
}

/// Records every RPC's latency (to the response headers) by method.
#[derive(Clone)]
struct RpcTimer<S> {
    inner: S,
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for RpcTimer<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let started = std::time::Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            service_kit::metrics::store_rpc(&method, started);
            r
        })
    }
}

/// Accepted connections with Nagle's algorithm off: tonic's own
/// `tcp_nodelay` only applies to listeners it binds itself, and small gRPC
/// frames held back by Nagle meet the peer's delayed ACK (40 ms stalls).
fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    })
}

/// TLS handshakes in progress at once on the gRPC listener; further
/// connections wait in the kernel backlog until one finishes.
const MAX_TLS_HANDSHAKES: usize = 64;
/// A peer that has not completed its handshake by then is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections after their TLS handshake, for tonic. Handshakes
/// run in their own tasks (at most [`MAX_TLS_HANDSHAKES`], each within
/// [`TLS_HANDSHAKE_TIMEOUT`]) so a slow or silent peer never holds up the
/// accept loop; a failed one (no or wrong client certificate, plaintext
/// h2c, a port scan) is logged at debug and dropped. Each connection gets
/// the acceptor current when it arrives, so a reloaded certificate applies
/// to new connections only. The stream ends on `shutdown` or when tonic
/// drops it.
fn tls_incoming(
    listener: TcpListener,
    tls: service_kit::tls::ReloadingTls,
    shutdown: CancellationToken,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_TLS_HANDSHAKES);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_TLS_HANDSHAKES));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(5);
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            backoff = Duration::from_millis(5);
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                let handshake =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "gRPC TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Marks the store NOT_SERVING while its database does not answer, and
/// records the pool's use.
async fn readiness(
    store: Store,
    reporter: tonic_health::server::HealthReporter,
    shutdown: CancellationToken,
) {
    let mut up = true;
    loop {
        let (open, idle) = store.pool_stats();
        service_kit::metrics::db_pool(open, idle);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let ok = store.ping().await.is_ok();
        if ok != up {
            up = ok;
            let status = if ok {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            tracing::warn!(database_up = ok, "store readiness changed");
        }
    }
}

/// Checks the calling service's shared secret (by comparing SHA-256
/// digests, so the comparison leaks nothing about the secret).
#[derive(Clone)]
struct ServiceCheck {
    digest: Option<Arc<[u8; 32]>>,
}

impl ServiceCheck {
    fn new(secret: Option<&str>) -> Self {
        Self {
            digest: secret.map(|s| Arc::new(Sha256::digest(s.as_bytes()).into())),
        }
    }
}

impl tonic::service::Interceptor for ServiceCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.digest else {
            return Ok(req);
        };
        let got = req
            .metadata()
            .get(SERVICE_TOKEN_KEY)
            .and_then(|v| v.to_str().ok())
            .map(|v| <[u8; 32]>::from(Sha256::digest(v.as_bytes())));
        match got {
            Some(g) if g == **want => Ok(req),
            _ => Err(Status::unauthenticated("missing or wrong service token")),
        }
    }
}

pub(crate) fn bearer<T>(req: &Request<T>) -> Result<&str, Status> {
    req.metadata()
        .get(AUTHORIZATION_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing session token"))
}

fn uid_set(set: Option<&pb::UidSet>) -> UidSetRanges {
    set.map(UidSetRanges::from).unwrap_or_default()
}

// ------------------------------------------------------------------ Delivery

pub struct DeliverySvc {
    store: Store,
}

#[tonic::async_trait]
impl delivery_server::Delivery for DeliverySvc {
    async fn check_recipient(
        &self,
        req: Request<pb::CheckRecipientRequest>,
    ) -> Result<Response<pb::CheckRecipientResponse>, Status> {
        let r = req.into_inner();
        let (status, canonical) = self.store.check_recipient(&r.address, r.size_hint).await?;
        Ok(Response::new(pb::CheckRecipientResponse {
            status: status as i32,
            canonical_address: canonical,
        }))
    }

    async fn deliver(
        &self,
        req: Request<Streaming<pb::DeliverChunk>>,
    ) -> Result<Response<pb::DeliverResponse>, Status> {
        let mut stream = req.into_inner();
        let header = match stream.message().await?.and_then(|c| c.part) {
            Some(pb::deliver_chunk::Part::Header(h)) => h,
            _ => return Err(Status::invalid_argument("first chunk must be the header")),
        };
        let max = self.store.settings().max_message_size;
        if header.size_hint > max {
            return Err(crate::StoreError::TooLarge.into());
        }
        let mut data = header.trace_headers.clone();
        data.reserve(header.size_hint.min(max) as usize);
        read_body(&mut stream, &mut data, max, |c| match c.part {
            Some(pb::deliver_chunk::Part::Data(d)) => Some(d),
            _ => None,
        })
        .await?;
        let resp = self
            .store
            .deliver_from(
                &header.delivery_id,
                &header.envelope_from,
                header.per_recipient_replies,
                &header.recipients,
                header.received_at,
                data,
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn claim_outbox(
        &self,
        req: Request<pb::ClaimOutboxRequest>,
    ) -> Result<Response<pb::ClaimOutboxResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(
            self.store
                .outbox_claim(&r.owner, r.limit, r.lease_secs)
                .await?,
        ))
    }

    async fn complete_outbox(
        &self,
        req: Request<pb::CompleteOutboxRequest>,
    ) -> Result<Response<pb::CompleteOutboxResponse>, Status> {
        let r = req.into_inner();
        self.store.outbox_complete(&r.owner, r.id).await?;
        Ok(Response::new(pb::CompleteOutboxResponse {}))
    }

    async fn fail_outbox(
        &self,
        req: Request<pb::FailOutboxRequest>,
    ) -> Result<Response<pb::FailOutboxResponse>, Status> {
        let r = req.into_inner();
        self.store
            .outbox_fail(&r.owner, r.id, &r.error, r.retry_after_secs, r.drop)
            .await?;
        Ok(Response::new(pb::FailOutboxResponse {}))
    }
}

/// Appends the data chunks of a stream to `data`, refusing more than `max`
/// bytes in all.
async fn read_body<T>(
    stream: &mut Streaming<T>,
    data: &mut Vec<u8>,
    max: u64,
    part: impl Fn(T) -> Option<Vec<u8>>,
) -> Result<(), Status> {
    while let Some(chunk) = stream.message().await? {
        let bytes = part(chunk).ok_or_else(|| Status::invalid_argument("expected a data chunk"))?;
        if (data.len() + bytes.len()) as u64 > max {
            return Err(crate::StoreError::TooLarge.into());
        }
        data.extend_from_slice(&bytes);
    }
    Ok(())
}

/// Messages one Append stream may carry (MULTIAPPEND).
const MAX_APPEND_MESSAGES: usize = 1000;

// ------------------------------------------------------------------ Mailbox

pub struct MailboxSvc {
    store: Store,
    /// Ends Watch streams on shutdown, so the server can drain.
    shutdown: CancellationToken,
}

impl MailboxSvc {
    async fn account<T>(&self, req: &Request<T>) -> Result<AccountId, Status> {
        Ok(self.store.resolve_session(bearer(req)?).await?)
    }
}

#[tonic::async_trait]
impl mailbox_server::Mailbox for MailboxSvc {
    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        let (token, account) = self
            .store
            .authenticate(&r.username, &r.password, &r.client_ip, &r.protocol)
            .await?;
        Ok(Response::new(pb::AuthenticateResponse {
            session_token: token,
            account,
            expires_in: self.store.settings().session_ttl.as_secs(),
        }))
    }

    async fn scram_begin(
        &self,
        req: Request<pb::ScramBeginRequest>,
    ) -> Result<Response<pb::ScramBeginResponse>, Status> {
        let r = req.into_inner();
        let (salt, iterations) = self.store.scram_begin(&r.username).await?;
        Ok(Response::new(pb::ScramBeginResponse { salt, iterations }))
    }

    async fn scram_finish(
        &self,
        req: Request<pb::ScramFinishRequest>,
    ) -> Result<Response<pb::ScramFinishResponse>, Status> {
        let r = req.into_inner();
        let (signature, token, account) = self
            .store
            .scram_finish(
                &r.username,
                &r.auth_message,
                &r.client_proof,
                &r.client_ip,
                &r.protocol,
            )
            .await?;
        Ok(Response::new(pb::ScramFinishResponse {
            server_signature: signature.to_vec(),
            session_token: token,
            account,
            expires_in: self.store.settings().session_ttl.as_secs(),
        }))
    }

    async fn authenticate_token(
        &self,
        req: Request<pb::AuthenticateTokenRequest>,
    ) -> Result<Response<pb::AuthenticateTokenResponse>, Status> {
        let r = req.into_inner();
        let resp = match self
            .store
            .authenticate_token(&r.token, &r.authzid, &r.client_ip, &r.protocol)
            .await?
        {
            Ok((token, account)) => pb::AuthenticateTokenResponse {
                session_token: token,
                account,
                expires_in: self.store.settings().session_ttl.as_secs(),
                error_json: String::new(),
            },
            Err(error_json) => pb::AuthenticateTokenResponse {
                error_json,
                ..Default::default()
            },
        };
        Ok(Response::new(resp))
    }

    async fn logout(
        &self,
        req: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        self.store.logout(bearer(&req)?).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn list_mailboxes(
        &self,
        req: Request<pb::ListMailboxesRequest>,
    ) -> Result<Response<pb::ListMailboxesResponse>, Status> {
        let account = self.account(&req).await?;
        let mut mailboxes = self.store.list_mailboxes(account).await?;
        // Subscribed names without a mailbox are listed too (LSUB semantics).
        let subs = self.store.list_subscriptions(account).await?;
        for name in subs {
            if !mailboxes.iter().any(|m| m.name == name) {
                mailboxes.push(pb::MailboxInfo {
                    name,
                    subscribed: true,
                    uid_validity: 0,
                    ..Default::default()
                });
            }
        }
        Ok(Response::new(pb::ListMailboxesResponse { mailboxes }))
    }

    async fn create_mailbox(
        &self,
        req: Request<pb::CreateMailboxRequest>,
    ) -> Result<Response<pb::CreateMailboxResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let mailbox = self
            .store
            .create_mailbox(account, &r.name, r.special_use())
            .await?;
        Ok(Response::new(pb::CreateMailboxResponse {
            mailbox: Some(mailbox),
        }))
    }

    async fn delete_mailbox(
        &self,
        req: Request<pb::DeleteMailboxRequest>,
    ) -> Result<Response<pb::DeleteMailboxResponse>, Status> {
        let account = self.account(&req).await?;
        self.store
            .delete_mailbox(account, &req.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteMailboxResponse {}))
    }

    async fn rename_mailbox(
        &self,
        req: Request<pb::RenameMailboxRequest>,
    ) -> Result<Response<pb::RenameMailboxResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store.rename_mailbox(account, &r.from, &r.to).await?;
        Ok(Response::new(pb::RenameMailboxResponse {}))
    }

    async fn set_subscribed(
        &self,
        req: Request<pb::SetSubscribedRequest>,
    ) -> Result<Response<pb::SetSubscribedResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store
            .set_subscribed(account, &r.name, r.subscribed)
            .await?;
        Ok(Response::new(pb::SetSubscribedResponse {}))
    }

    async fn mailbox_status(
        &self,
        req: Request<pb::MailboxStatusRequest>,
    ) -> Result<Response<pb::MailboxStatusResponse>, Status> {
        let account = self.account(&req).await?;
        let status = self
            .store
            .mailbox_status(account, &req.into_inner().name)
            .await?;
        Ok(Response::new(pb::MailboxStatusResponse {
            status: Some(status),
        }))
    }

    type SelectStream = BoxStream<pb::SelectResponse>;

    async fn select(
        &self,
        req: Request<pb::SelectRequest>,
    ) -> Result<Response<Self::SelectStream>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let (status, entries) = self.store.select(account, &r.name, r.read_only).await?;
        let mut out = vec![Ok(pb::SelectResponse {
            part: Some(pb::select_response::Part::Status(status)),
        })];
        out.extend(entries.chunks(SELECT_BATCH).map(|c| {
            Ok(pb::SelectResponse {
                part: Some(pb::select_response::Part::Batch(pb::MessageBatch {
                    messages: c.to_vec(),
                })),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }

    type FetchStream = BoxStream<pb::FetchResponse>;

    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let metas = self
            .store
            .fetch(
                account,
                &r.mailbox,
                &uid_set(r.uids.as_ref()),
                r.with_summary,
                r.changed_since,
                r.with_data,
            )
            .await?;
        // Responses of at most FETCH_BATCH messages and about
        // FETCH_RESPONSE_BYTES of inline data, well under the gRPC limit.
        let mut out: Vec<Result<pb::FetchResponse, Status>> = Vec::new();
        let mut cur = pb::FetchResponse::default();
        let mut bytes = 0usize;
        for m in metas {
            let n = m.data.as_ref().map_or(0, Vec::len);
            if !cur.messages.is_empty()
                && (cur.messages.len() >= FETCH_BATCH || bytes + n > FETCH_RESPONSE_BYTES)
            {
                out.push(Ok(std::mem::take(&mut cur)));
                bytes = 0;
            }
            bytes += n;
            cur.messages.push(m);
        }
        if !cur.messages.is_empty() {
            out.push(Ok(cur));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }

    type FetchBodyStream = BoxStream<pb::BodyChunk>;

    async fn fetch_body(
        &self,
        req: Request<pb::FetchBodyRequest>,
    ) -> Result<Response<Self::FetchBodyStream>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let (data, total) = self
            .store
            .message_data(account, &r.mailbox, r.uid, r.offset, r.length)
            .await?;
        let data = bytes::Bytes::from(data);
        let mut chunks: Vec<Result<pb::BodyChunk, Status>> = Vec::new();
        let mut off = 0;
        loop {
            let n = CHUNK_SIZE.min(data.len() - off);
            chunks.push(Ok(pb::BodyChunk {
                data: data.slice(off..off + n).to_vec(),
                total_size: if off == 0 { total } else { 0 },
            }));
            off += n;
            if off >= data.len() {
                break;
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn store_flags(
        &self,
        req: Request<pb::StoreFlagsRequest>,
    ) -> Result<Response<pb::StoreFlagsResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let resp = self
            .store
            .store_flags(
                account,
                &r.mailbox,
                &uid_set(r.uids.as_ref()),
                r.mode(),
                &r.flags.clone().unwrap_or_default(),
                r.unchanged_since,
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn copy(
        &self,
        req: Request<pb::CopyRequest>,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let resp = self
            .store
            .copy(
                account,
                &r.mailbox,
                &uid_set(r.uids.as_ref()),
                &r.destination,
                false,
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn r#move(
        &self,
        req: Request<pb::CopyRequest>,
    ) -> Result<Response<pb::CopyResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let resp = self
            .store
            .copy(
                account,
                &r.mailbox,
                &uid_set(r.uids.as_ref()),
                &r.destination,
                true,
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn expunge(
        &self,
        req: Request<pb::ExpungeRequest>,
    ) -> Result<Response<pb::ExpungeResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let set = r
            .uids
            .as_ref()
            .filter(|s| !s.ranges.is_empty())
            .map(UidSetRanges::from);
        let resp = self
            .store
            .expunge(
                account,
                &r.mailbox,
                set.as_ref(),
                r.ignore_deleted_flag,
                &r.lease_id,
            )
            .await?;
        Ok(Response::new(resp))
    }

    async fn append(
        &self,
        req: Request<Streaming<pb::AppendChunk>>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let account = self.account(&req).await?;
        let mut stream = req.into_inner();
        let max = self.store.settings().max_message_size;
        // A header, its data chunks; another header starts the next
        // message (MULTIAPPEND). The messages together are bounded like
        // one message is, so a stream of many cannot exhaust memory.
        let mut header = match stream.message().await?.and_then(|c| c.part) {
            Some(pb::append_chunk::Part::Header(h)) => h,
            _ => return Err(Status::invalid_argument("first chunk must be the header")),
        };
        let key = std::mem::take(&mut header.idempotency_key);
        if key.len() > 128 {
            return Err(Status::invalid_argument(
                "idempotency key longer than 128 bytes",
            ));
        }
        let mut messages: Vec<crate::NewMessage> = Vec::new();
        let mut total: u64 = 0;
        loop {
            if header.size > max {
                return Err(crate::StoreError::TooLarge.into());
            }
            if messages.len() >= MAX_APPEND_MESSAGES {
                return Err(Status::invalid_argument("too many messages in one APPEND"));
            }
            // The announced size is only a hint: never trusted for more
            // than a chunk's worth of memory up front.
            let mut data =
                Vec::with_capacity(header.size.min(mailbox_api::CHUNK_SIZE as u64) as usize);
            let mut next = None;
            while let Some(chunk) = stream.message().await? {
                match chunk.part {
                    Some(pb::append_chunk::Part::Data(d)) => {
                        total += d.len() as u64;
                        if (data.len() + d.len()) as u64 > max || total > max.saturating_mul(4) {
                            return Err(crate::StoreError::TooLarge.into());
                        }
                        data.extend_from_slice(&d);
                    }
                    Some(pb::append_chunk::Part::Header(h)) => {
                        next = Some(h);
                        break;
                    }
                    None => return Err(Status::invalid_argument("empty chunk")),
                }
            }
            let date = (header.internal_date != 0)
                .then_some((header.internal_date, header.internal_date_tz));
            messages.push(crate::NewMessage {
                flags: header.flags.clone().unwrap_or_default(),
                internal_date: date,
                data,
            });
            match next {
                Some(h) => {
                    if h.mailbox != header.mailbox {
                        return Err(Status::invalid_argument("one mailbox per APPEND"));
                    }
                    header = h;
                }
                None => break,
            }
        }
        let resp = self
            .store
            .append(account, &header.mailbox, messages, &key)
            .await?;
        Ok(Response::new(resp))
    }

    async fn search(
        &self,
        req: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let key = r.key.unwrap_or(pb::SearchKey {
            key: Some(pb::search_key::Key::All(true)),
        });
        Ok(Response::new(
            self.store.search(account, &r.mailbox, &key).await?,
        ))
    }

    async fn multi_search(
        &self,
        req: Request<pb::MultiSearchRequest>,
    ) -> Result<Response<pb::MultiSearchResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(self.store.multi_search(account, &r).await?))
    }

    async fn sort(
        &self,
        req: Request<pb::SortRequest>,
    ) -> Result<Response<pb::SortResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store
                .sort(
                    account,
                    &r.mailbox,
                    r.criteria,
                    r.key.as_ref(),
                    r.uids.as_ref(),
                )
                .await?,
        ))
    }

    async fn thread(
        &self,
        req: Request<pb::ThreadRequest>,
    ) -> Result<Response<pb::ThreadResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store
                .thread(
                    account,
                    &r.mailbox,
                    r.algorithm(),
                    r.key.as_ref(),
                    r.uids.as_ref(),
                )
                .await?,
        ))
    }

    async fn get_quota(
        &self,
        req: Request<pb::GetQuotaRequest>,
    ) -> Result<Response<pb::GetQuotaResponse>, Status> {
        let account = self.account(&req).await?;
        Ok(Response::new(self.store.quota(account).await?))
    }

    async fn acquire_maildrop(
        &self,
        req: Request<pb::AcquireMaildropRequest>,
    ) -> Result<Response<pb::AcquireMaildropResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let lease = self
            .store
            .acquire_maildrop(
                account,
                &r.holder,
                Duration::from_secs(r.ttl_seconds.into()),
                &r.lease_id,
            )
            .await?;
        Ok(Response::new(pb::AcquireMaildropResponse {
            in_use: lease.is_none(),
            lease_id: lease.unwrap_or_default(),
        }))
    }

    async fn renew_maildrop(
        &self,
        req: Request<pb::RenewMaildropRequest>,
    ) -> Result<Response<pb::RenewMaildropResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let held = self
            .store
            .renew_maildrop(
                account,
                &r.lease_id,
                Duration::from_secs(r.ttl_seconds.into()),
            )
            .await?;
        Ok(Response::new(pb::RenewMaildropResponse { held }))
    }

    async fn release_maildrop(
        &self,
        req: Request<pb::ReleaseMaildropRequest>,
    ) -> Result<Response<pb::ReleaseMaildropResponse>, Status> {
        let account = self.account(&req).await?;
        self.store
            .release_maildrop(account, &req.into_inner().lease_id)
            .await?;
        Ok(Response::new(pb::ReleaseMaildropResponse {}))
    }

    async fn changes(
        &self,
        req: Request<pb::ChangesRequest>,
    ) -> Result<Response<pb::ChangesResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        Ok(Response::new(
            self.store
                .changes(
                    account,
                    &r.mailbox,
                    r.since_modseq,
                    r.claim_recent,
                    r.uid_validity,
                    r.expunged_only,
                )
                .await?,
        ))
    }

    async fn gen_url_auth(
        &self,
        req: Request<pb::GenUrlAuthRequest>,
    ) -> Result<Response<pb::GenUrlAuthResponse>, Status> {
        let account = self.account(&req).await?;
        let url = self
            .store
            .gen_urlauth(account, &req.into_inner().rump)
            .await?;
        Ok(Response::new(pb::GenUrlAuthResponse { url }))
    }

    async fn reset_url_auth_keys(
        &self,
        req: Request<pb::ResetUrlAuthKeysRequest>,
    ) -> Result<Response<pb::ResetUrlAuthKeysResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let mailbox = (!r.mailbox.is_empty()).then_some(r.mailbox.as_str());
        self.store.reset_urlauth_keys(account, mailbox).await?;
        Ok(Response::new(pb::ResetUrlAuthKeysResponse {}))
    }

    type UrlFetchStream = BoxStream<pb::UrlFetchChunk>;

    async fn url_fetch(
        &self,
        req: Request<pb::UrlFetchRequest>,
    ) -> Result<Response<Self::UrlFetchStream>, Status> {
        let account = self.account(&req).await?;
        let (meta, data) = self.store.url_fetch(account, &req.into_inner().url).await?;
        let mut out: Vec<Result<pb::UrlFetchChunk, Status>> = vec![Ok(pb::UrlFetchChunk {
            meta: Some(meta),
            data: Vec::new(),
        })];
        out.extend(data.chunks(CHUNK_SIZE).map(|c| {
            Ok(pb::UrlFetchChunk {
                meta: None,
                data: c.to_vec(),
            })
        }));
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }

    async fn get_metadata(
        &self,
        req: Request<pb::GetMetadataRequest>,
    ) -> Result<Response<pb::GetMetadataResponse>, Status> {
        let account = self.account(&req).await?;
        let entries = self
            .store
            .get_metadata(account, &req.into_inner().mailbox)
            .await?;
        Ok(Response::new(pb::GetMetadataResponse { entries }))
    }

    async fn set_metadata(
        &self,
        req: Request<pb::SetMetadataRequest>,
    ) -> Result<Response<pb::SetMetadataResponse>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        self.store
            .set_metadata(account, &r.mailbox, r.entries)
            .await?;
        Ok(Response::new(pb::SetMetadataResponse {}))
    }

    type WatchMailboxListStream = BoxStream<pb::WatchMailboxListResponse>;

    async fn watch_mailbox_list(
        &self,
        req: Request<pb::WatchMailboxListRequest>,
    ) -> Result<Response<Self::WatchMailboxListStream>, Status> {
        let account = self.account(&req).await?;
        let mut ticks = self.store.watch_mailbox_list(account);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let metadata = tokio::select! {
                    t = ticks.recv() => match t {
                        Ok(m) => m,
                        Err(broadcast::error::RecvError::Closed) => return,
                        // Missed ticks: any of them may have been METADATA.
                        Err(broadcast::error::RecvError::Lagged(_)) => true,
                    },
                    // The periodic re-read covers the list only.
                    _ = tokio::time::sleep(WATCH_POLL) => false,
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => return,
                };
                // Ticks that pile up while the caller reads are one.
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                    tx.try_send(Ok(pb::WatchMailboxListResponse { metadata }))
                {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx).boxed()))
    }

    type WatchStream = BoxStream<pb::ChangesResponse>;

    /// Streams changes of one mailbox. `since_modseq` 0 means "from now".
    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let account = self.account(&req).await?;
        let r = req.into_inner();
        let (id, mut hint) = self.store.watch(account, &r.mailbox).await?;
        let mut since = r.since_modseq;
        if since == 0 {
            since = self
                .store
                .changes_by_id(account, id, u64::MAX >> 1, false)
                .await?
                .map(|c| c.highest_modseq)
                .ok_or(crate::StoreError::NotFound("mailbox"))?;
        }
        let claim = r.claim_recent;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let store = self.store.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Changes a local write carried to the hub need no database
            // read; anything else (another replica's hint, a gap) does.
            let mut step = hub::Next::Read;
            loop {
                match step {
                    hub::Next::Carried { mut changes, claim } => {
                        if let Some((guess, upto)) = claim {
                            match store.claim_recent(id, guess, upto).await {
                                Ok(won) => {
                                    if let Some(last) = changes.last_mut() {
                                        last.recent_from = won.start;
                                        last.recent_to = won.end;
                                    }
                                }
                                Err(e) => {
                                    let _ = tx.send(Err(e.into())).await;
                                    return;
                                }
                            }
                        }
                        for c in changes {
                            since = since.max(c.highest_modseq);
                            if tx.send(Ok(c)).await.is_err() {
                                return;
                            }
                        }
                    }
                    hub::Next::Read => match store.changes_by_id(account, id, since, claim).await {
                        Ok(Some(c)) => {
                            // A \Recent claim is sent even without other
                            // news: it may cover messages the watcher knows.
                            if c.highest_modseq > since || c.recent_from < c.recent_to {
                                since = since.max(c.highest_modseq);
                                if tx.send(Ok(c)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => {
                            let _ = tx
                                .send(Ok(pb::ChangesResponse {
                                    gone: true,
                                    ..Default::default()
                                }))
                                .await;
                            return;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    },
                }
                step = tokio::select! {
                    signal = hint.recv() => {
                        if matches!(signal, Err(broadcast::error::RecvError::Closed)) {
                            return;
                        }
                        hub::next(&mut hint, signal, since, claim)
                    }
                    _ = tokio::time::sleep(WATCH_POLL) => hub::Next::Read,
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => return,
                };
            }
        });
        Ok(Response::new(ReceiverStream::new(rx).boxed()))
    }
}

// ------------------------------------------------------------------ Admin

pub struct AdminSvc {
    store: Store,
}

#[tonic::async_trait]
impl admin_server::Admin for AdminSvc {
    async fn add_domain(
        &self,
        req: Request<pb::AddDomainRequest>,
    ) -> Result<Response<pb::AddDomainResponse>, Status> {
        self.store.add_domain(&req.into_inner().name).await?;
        Ok(Response::new(pb::AddDomainResponse {}))
    }

    async fn list_domains(
        &self,
        _req: Request<pb::ListDomainsRequest>,
    ) -> Result<Response<pb::ListDomainsResponse>, Status> {
        Ok(Response::new(pb::ListDomainsResponse {
            domains: self.store.list_domains().await?,
        }))
    }

    async fn set_domain_oidc(
        &self,
        req: Request<pb::SetDomainOidcRequest>,
    ) -> Result<Response<pb::SetDomainOidcResponse>, Status> {
        let o = req
            .into_inner()
            .oidc
            .ok_or_else(|| Status::invalid_argument("oidc missing"))?;
        self.store.set_domain_oidc(&o).await?;
        Ok(Response::new(pb::SetDomainOidcResponse {}))
    }

    async fn get_domain_oidc(
        &self,
        req: Request<pb::GetDomainOidcRequest>,
    ) -> Result<Response<pb::GetDomainOidcResponse>, Status> {
        Ok(Response::new(pb::GetDomainOidcResponse {
            oidc: self.store.domain_oidc(&req.into_inner().domain).await?,
        }))
    }

    async fn delete_domain(
        &self,
        req: Request<pb::DeleteDomainRequest>,
    ) -> Result<Response<pb::DeleteDomainResponse>, Status> {
        self.store.delete_domain(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteDomainResponse {}))
    }

    async fn add_account(
        &self,
        req: Request<pb::AddAccountRequest>,
    ) -> Result<Response<pb::AddAccountResponse>, Status> {
        let r = req.into_inner();
        self.store
            .add_account(&r.address, &r.password, r.quota_bytes)
            .await?;
        Ok(Response::new(pb::AddAccountResponse {}))
    }

    async fn list_accounts(
        &self,
        req: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        Ok(Response::new(pb::ListAccountsResponse {
            accounts: self.store.list_accounts(&req.into_inner().domain).await?,
        }))
    }

    async fn delete_account(
        &self,
        req: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountResponse>, Status> {
        self.store.delete_account(&req.into_inner().address).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    async fn set_password(
        &self,
        req: Request<pb::SetPasswordRequest>,
    ) -> Result<Response<pb::SetPasswordResponse>, Status> {
        let r = req.into_inner();
        self.store.set_password(&r.address, &r.password).await?;
        Ok(Response::new(pb::SetPasswordResponse {}))
    }

    async fn set_quota(
        &self,
        req: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        let r = req.into_inner();
        self.store
            .set_quota(&r.address, r.quota_bytes, r.quota_messages)
            .await?;
        Ok(Response::new(pb::SetQuotaResponse {}))
    }

    async fn set_account_disabled(
        &self,
        req: Request<pb::SetAccountDisabledRequest>,
    ) -> Result<Response<pb::SetAccountDisabledResponse>, Status> {
        let r = req.into_inner();
        self.store.set_disabled(&r.address, r.disabled).await?;
        Ok(Response::new(pb::SetAccountDisabledResponse {}))
    }

    async fn add_app_password(
        &self,
        req: Request<pb::AddAppPasswordRequest>,
    ) -> Result<Response<pb::AddAppPasswordResponse>, Status> {
        let r = req.into_inner();
        let password = self.store.add_app_password(&r.address, &r.name).await?;
        Ok(Response::new(pb::AddAppPasswordResponse { password }))
    }

    async fn list_app_passwords(
        &self,
        req: Request<pb::ListAppPasswordsRequest>,
    ) -> Result<Response<pb::ListAppPasswordsResponse>, Status> {
        let r = req.into_inner();
        let passwords = self
            .store
            .list_app_passwords(&r.address)
            .await?
            .into_iter()
            .map(|(name, created_at)| pb::AppPassword { name, created_at })
            .collect();
        Ok(Response::new(pb::ListAppPasswordsResponse { passwords }))
    }

    async fn revoke_app_password(
        &self,
        req: Request<pb::RevokeAppPasswordRequest>,
    ) -> Result<Response<pb::RevokeAppPasswordResponse>, Status> {
        let r = req.into_inner();
        self.store.revoke_app_password(&r.address, &r.name).await?;
        Ok(Response::new(pb::RevokeAppPasswordResponse {}))
    }

    async fn add_alias(
        &self,
        req: Request<pb::AddAliasRequest>,
    ) -> Result<Response<pb::AddAliasResponse>, Status> {
        let r = req.into_inner();
        self.store.add_alias(&r.alias, &r.target).await?;
        Ok(Response::new(pb::AddAliasResponse {}))
    }

    async fn list_aliases(
        &self,
        _req: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        Ok(Response::new(pb::ListAliasesResponse {
            aliases: self.store.list_aliases().await?,
        }))
    }

    async fn delete_alias(
        &self,
        req: Request<pb::DeleteAliasRequest>,
    ) -> Result<Response<pb::DeleteAliasResponse>, Status> {
        self.store.delete_alias(&req.into_inner().alias).await?;
        Ok(Response::new(pb::DeleteAliasResponse {}))
    }

    async fn stats(
        &self,
        _req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsResponse>, Status> {
        Ok(Response::new(self.store.stats().await?))
    }

    async fn collect_garbage(
        &self,
        req: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        let grace = req
            .into_inner()
            .grace_secs
            .map_or(self.store.settings().blob_gc_grace, Duration::from_secs);
        let (blobs, bytes) = self.store.collect_blobs(grace).await?;
        Ok(Response::new(pb::CollectGarbageResponse { blobs, bytes }))
    }

    async fn fts_status(
        &self,
        _req: Request<pb::FtsStatusRequest>,
    ) -> Result<Response<pb::FtsStatusResponse>, Status> {
        Ok(Response::new(self.store.fts_status().await?))
    }

    async fn fts_rebuild(
        &self,
        _req: Request<pb::FtsRebuildRequest>,
    ) -> Result<Response<pb::FtsRebuildResponse>, Status> {
        let marked = self.store.fts_rebuild().await?;
        Ok(Response::new(pb::FtsRebuildResponse { marked }))
    }

    async fn open_session(
        &self,
        req: Request<pb::OpenSessionRequest>,
    ) -> Result<Response<pb::OpenSessionResponse>, Status> {
        let r = req.into_inner();
        let token = self.store.open_session(&r.address, &r.purpose).await?;
        Ok(Response::new(pb::OpenSessionResponse {
            session_token: token,
            expires_in: self.store.settings().session_ttl.as_secs(),
        }))
    }
}
