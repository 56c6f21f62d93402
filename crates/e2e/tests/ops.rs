//! Operations, with the services as real processes: OpenTelemetry export to
//! an OTLP receiver run by the test, readiness following the dependencies,
//! graceful drain on SIGTERM, and TLS certificates reloaded from disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::otlp::{Received, start_receiver};
use e2e::{PgDatabase, Proxy, StoreClient, message, python};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// Never the same port twice in this process (see e2e::procs::free_port).
use e2e::procs::free_port;

/// A service process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(which: &str, env: &[(&str, String)]) -> Proc {
    let mut c = Command::new(env!("CARGO_BIN_EXE_e2e-service"));
    c.arg(which)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        c.env(k, v);
    }
    Proc(c.spawn().unwrap())
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ------------------------------------------------------------ OTLP receiver

/// (service name, span name, trace id, span id, parent span id).
type SpanRow = (String, String, Vec<u8>, Vec<u8>, Vec<u8>);

/// Every span received.
fn spans(r: &Received) -> Vec<SpanRow> {
    let mut out = Vec::new();
    for req in r.traces.lock().unwrap().iter() {
        for rs in &req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|res| {
                    res.attributes
                        .iter()
                        .find(|a| a.key == "service.name")
                        .and_then(|a| match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(s)) => Some(s.clone()),
                            _ => None,
                        })
                })
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((
                        service.clone(),
                        s.name.clone(),
                        s.trace_id.clone(),
                        s.span_id.clone(),
                        s.parent_span_id.clone(),
                    ));
                }
            }
        }
    }
    out
}

/// The largest value each metric reported (sum, gauge, or histogram count).
fn metric_values(r: &Received) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for req in r.metrics.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let v = match &m.data {
                        Some(Data::Sum(s)) => s.data_points.iter().map(point).fold(0.0, f64::max),
                        Some(Data::Gauge(g)) => g.data_points.iter().map(point).fold(0.0, f64::max),
                        Some(Data::Histogram(h)) => h
                            .data_points
                            .iter()
                            .map(|p| p.count as f64)
                            .fold(0.0, f64::max),
                        _ => 0.0,
                    };
                    let e = out.entry(m.name.clone()).or_default();
                    *e = e.max(v);
                }
            }
        }
    }
    out
}

fn point(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as V;
    match p.value {
        Some(V::AsDouble(d)) => d,
        Some(V::AsInt(i)) => i as f64,
        None => 0.0,
    }
}

async fn smtp_reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
    let mut all = String::new();
    loop {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(20), r.read_line(&mut l))
            .await
            .expect("reply")
            .unwrap();
        all.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_smtp_delivery_is_one_trace_and_metrics_are_exported() {
    let (received, otlp) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let (store_port, smtp_port) = (free_port(), free_port());
    let otel = |name: &str| {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_SERVICE_NAME", name.to_string()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test".into(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
        ]
    };
    let mut env = otel("mailbox-store");
    env.extend([
        ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
        (
            "MAILSTORE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("m.db").display()),
        ),
        ("MAILSTORE_ADMIN_LISTEN", String::new()),
        ("MAILSTORE_FAILURE_DELAY_MS", "0".into()),
    ]);
    let _store = spawn("store", &env);
    let mut env = otel("smtp-ingest");
    env.extend([
        ("SMTP_LISTEN", format!("127.0.0.1:{smtp_port}")),
        ("SMTP_LMTP_LISTEN", String::new()),
        ("SMTP_STORE_URL", format!("http://127.0.0.1:{store_port}")),
        ("SMTP_ADMIN_LISTEN", String::new()),
    ]);
    let _smtp = spawn("smtp", &env);
    let client = StoreClient::new(&format!("http://127.0.0.1:{store_port}"));
    wait_until("store", Duration::from_secs(20), || {
        let mut a = client.admin();
        async move {
            a.list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
                .await
                .is_ok()
        }
    })
    .await;
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    // One failed login for the auth-failure counter.
    let _ = e2e::mailbox_api::mailbox_client(
        e2e::mailbox_api::channel(&format!("http://127.0.0.1:{store_port}")).unwrap(),
        e2e::mailbox_api::CallAuth::default(),
    )
    .authenticate(e2e::mailbox_api::pb::AuthenticateRequest {
        username: "alice@example.org".into(),
        password: "wrong".into(),
        client_ip: "192.0.2.1".into(),
        protocol: "test".into(),
    })
    .await;

    wait_until("smtp", Duration::from_secs(20), || async {
        TcpStream::connect(("127.0.0.1", smtp_port)).await.is_ok()
    })
    .await;
    let s = TcpStream::connect(("127.0.0.1", smtp_port)).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    smtp_reply(&mut r).await;
    for cmd in [
        "EHLO otel.example",
        "MAIL FROM:<a@remote.example>",
        "RCPT TO:<alice@example.org>",
        "DATA",
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        smtp_reply(&mut r).await;
    }
    w.write_all(&message("otel-1", "traced")).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let reply = smtp_reply(&mut r).await;
    assert!(reply.starts_with("250"), "{reply}");
    // The connection stays open so the open-connections gauge is non-zero.

    let mut linked = None;
    wait_until(
        "linked spans from both services",
        Duration::from_secs(30),
        || {
            let all = spans(&received);
            linked = all.iter().find_map(|(svc, name, trace, _, parent)| {
                if svc != "mailbox-store" || name != "grpc.server" || parent.is_empty() {
                    return None;
                }
                let p = all
                    .iter()
                    .find(|(s, _, t, id, _)| s == "smtp-ingest" && t == trace && id == parent)?;
                Some((trace.clone(), p.1.clone()))
            });
            let ok = linked.as_ref().is_some_and(|(trace, _)| {
                let all = spans(&received);
                // The Deliver call's database work is in the same trace.
                all.iter()
                    .any(|(s, n, t, _, _)| s == "mailbox-store" && n == "db" && t == trace)
            });
            async move { ok }
        },
    )
    .await;
    let (trace, parent_name) = linked.unwrap();
    let all = spans(&received);
    assert!(
        all.iter()
            .any(|(s, n, t, _, _)| s == "smtp-ingest" && n == "smtp.command" && *t == trace),
        "the SMTP command span is not in the delivery's trace"
    );
    assert!(!parent_name.is_empty());

    let wanted = [
        "mail.connections.open",
        "mail.commands",
        "mail.command.duration",
        "mail.deliveries",
        "mail.auth.failures",
        "mail.store.rpc.duration",
        "mail.db.pool.connections",
    ];
    let start = Instant::now();
    loop {
        let v = metric_values(&received);
        if wanted.iter().all(|m| v.get(*m).is_some_and(|x| *x > 0.0)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "metrics missing or zero: {:?}",
            wanted.iter().map(|m| (m, v.get(*m))).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(w);
}

// ------------------------------------------------------------ readiness

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database_and_the_store() {
    let db = PgDatabase::create().await;
    // The database's host:port, wherever DATABASE_URL points.
    let host_port = db
        .url
        .rsplit_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(hp, _)| hp.to_string())
        .unwrap();
    let pg: SocketAddr = host_port.parse().unwrap();
    let proxy = Proxy::start(pg).await;
    let url = db.url.replace(&host_port, &proxy.addr.to_string());
    let (store_port, store_admin, smtp_admin) = (free_port(), free_port(), free_port());
    let store_env = vec![
        ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
        ("MAILSTORE_DATABASE_URL", url),
        ("MAILSTORE_ADMIN_LISTEN", format!("127.0.0.1:{store_admin}")),
    ];
    let store = spawn("store", &store_env);
    let _smtp = spawn(
        "smtp",
        &[
            ("SMTP_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", format!("http://127.0.0.1:{store_port}")),
            ("SMTP_ADMIN_LISTEN", format!("127.0.0.1:{smtp_admin}")),
        ],
    );
    let status = |port: u16| async move {
        http_status(SocketAddr::from(([127, 0, 0, 1], port)), "/readyz").await
    };
    wait_until("store ready", Duration::from_secs(30), || async {
        status(store_admin).await == Some(200)
    })
    .await;
    wait_until("ingest ready", Duration::from_secs(30), || async {
        status(smtp_admin).await == Some(200)
    })
    .await;
    assert_eq!(
        http_status(SocketAddr::from(([127, 0, 0, 1], smtp_admin)), "/livez").await,
        Some(200)
    );

    // The database goes away: the store, then ingest, report not ready.
    proxy.set(false);
    wait_until(
        "store unready without its database",
        Duration::from_secs(30),
        || async { status(store_admin).await == Some(503) },
    )
    .await;
    wait_until(
        "ingest unready with the store unready",
        Duration::from_secs(30),
        || async { status(smtp_admin).await == Some(503) },
    )
    .await;
    proxy.set(true);
    wait_until("store ready again", Duration::from_secs(30), || async {
        status(store_admin).await == Some(200)
    })
    .await;
    wait_until("ingest ready again", Duration::from_secs(30), || async {
        status(smtp_admin).await == Some(200)
    })
    .await;

    // The store process stops: ingest is not ready; it comes back: ready.
    drop(store);
    wait_until(
        "ingest unready without the store",
        Duration::from_secs(30),
        || async { status(smtp_admin).await == Some(503) },
    )
    .await;
    let _store = spawn("store", &store_env);
    wait_until(
        "ingest ready with the store back",
        Duration::from_secs(30),
        || async { status(smtp_admin).await == Some(200) },
    )
    .await;
}

// ------------------------------------------------------------ drain

fn sigterm(p: &Proc) {
    let ok = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM failed");
}

fn wait_exit(p: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_smtp_data_and_says_bye_to_idle_imap() {
    let dir = tempfile::tempdir().unwrap();
    let (store_port, smtp_port, imap_port) = (free_port(), free_port(), free_port());
    let _store = spawn(
        "store",
        &[
            ("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}")),
            (
                "MAILSTORE_DATABASE_URL",
                format!("sqlite://{}", dir.path().join("m.db").display()),
            ),
            ("MAILSTORE_ADMIN_LISTEN", String::new()),
        ],
    );
    let store_url = format!("http://127.0.0.1:{store_port}");
    let client = StoreClient::new(&store_url);
    wait_until("store", Duration::from_secs(20), || {
        let mut a = client.admin();
        async move {
            a.list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
                .await
                .is_ok()
        }
    })
    .await;
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    let mut smtp = spawn(
        "smtp",
        &[
            ("SMTP_LISTEN", format!("127.0.0.1:{smtp_port}")),
            ("SMTP_LMTP_LISTEN", String::new()),
            ("SMTP_STORE_URL", store_url.clone()),
            ("SMTP_ADMIN_LISTEN", String::new()),
            ("SMTP_SHUTDOWN_GRACE_SECS", "10".into()),
        ],
    );
    let mut imap = spawn(
        "imap",
        &[
            ("IMAP_LISTEN", format!("127.0.0.1:{imap_port}")),
            ("IMAP_STORE_URL", store_url.clone()),
            ("IMAP_ADMIN_LISTEN", String::new()),
            ("IMAP_SHUTDOWN_GRACE_SECS", "10".into()),
        ],
    );
    for port in [smtp_port, imap_port] {
        wait_until("listener", Duration::from_secs(20), || async move {
            TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
    }

    // SMTP: SIGTERM arrives in the middle of DATA.
    let s = TcpStream::connect(("127.0.0.1", smtp_port)).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    smtp_reply(&mut r).await;
    for cmd in [
        "EHLO drain.example",
        "MAIL FROM:<a@remote.example>",
        "RCPT TO:<alice@example.org>",
        "DATA",
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        smtp_reply(&mut r).await;
    }
    let msg = message("drain-1", "sent across a SIGTERM");
    let (a, b) = msg.split_at(msg.len() / 2);
    w.write_all(a).await.unwrap();
    w.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&smtp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A new connection is no longer accepted...
    // ...but the transfer in progress completes.
    w.write_all(b).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let reply = smtp_reply(&mut r).await;
    assert!(
        reply.starts_with("250"),
        "in-flight DATA lost on SIGTERM: {reply}"
    );
    let bye = smtp_reply(&mut r).await;
    assert!(bye.starts_with("421"), "{bye}");
    let st = tokio::task::spawn_blocking(move || wait_exit(&mut smtp, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(st.success(), "smtp-ingest exit status {st:?}");
    assert_eq!(
        client
            .messages("alice@example.org", "pw", "INBOX")
            .await
            .len(),
        1
    );

    // IMAP: an IDLE-ing client gets BYE.
    let s = TcpStream::connect(("127.0.0.1", imap_port)).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    w.write_all(b"a LOGIN alice@example.org pw\r\nb SELECT INBOX\r\nc IDLE\r\n")
        .await
        .unwrap();
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line.starts_with("+ ") {
            break;
        }
    }
    sigterm(&imap);
    line.clear();
    tokio::time::timeout(Duration::from_secs(60), r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert!(line.starts_with("* BYE"), "{line}");
    let st = tokio::task::spawn_blocking(move || wait_exit(&mut imap, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(st.success(), "imap-gateway exit status {st:?}");
}

// ------------------------------------------------------------ TLS reload

fn server_cert_pem(port: u16) -> String {
    let (ok, out) = python("server_cert.py", &["127.0.0.1", &port.to_string()]);
    assert!(ok, "{out}");
    out
}

fn normalise(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_restart() {
    let store = e2e::TestStore::start(e2e::Backend::Sqlite).await;
    let imap = e2e::TestImap::start(&store.uri()).await;
    let port = imap.imaps.port();
    let cert_path = imap.cert_dir.path().join("tls/cert.pem");
    let key_path = imap.cert_dir.path().join("tls/key.pem");
    let first = std::fs::read_to_string(&cert_path).unwrap();
    let served = tokio::task::spawn_blocking(move || server_cert_pem(port))
        .await
        .unwrap();
    assert_eq!(normalise(&served), normalise(&first));

    // An open session keeps working across the change.
    let open = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import imaplib,ssl,time,sys\nctx=ssl._create_unverified_context()\n\
                 M=imaplib.IMAP4_SSL('127.0.0.1',{port},ssl_context=ctx)\nsys.stdout.write('open\\n');sys.stdout.flush()\n\
                 time.sleep(4)\nprint(M.noop()[0])"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    })
    .await
    .unwrap();

    // cert-manager style: new files written, then moved into place.
    let other = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = service_kit::tls::ensure_self_signed(other.path()).unwrap();
    std::fs::copy(&new_key, key_path.with_extension("new")).unwrap();
    std::fs::rename(key_path.with_extension("new"), &key_path).unwrap();
    std::fs::copy(&new_cert, cert_path.with_extension("new")).unwrap();
    std::fs::rename(cert_path.with_extension("new"), &cert_path).unwrap();
    let second = std::fs::read_to_string(&cert_path).unwrap();
    assert_ne!(normalise(&first), normalise(&second));
    wait_until(
        "the new certificate served",
        Duration::from_secs(60),
        || {
            let want = normalise(&second);
            async move {
                let served = tokio::task::spawn_blocking(move || server_cert_pem(port))
                    .await
                    .unwrap();
                normalise(&served) == want
            }
        },
    )
    .await;
    let out = tokio::task::spawn_blocking(move || open.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("OK"),
        "open session broke"
    );
    drop(imap);
}

/// Logs written to a pipe or a file carry no terminal colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let store_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-service"))
        .arg("store")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .env("MAILSTORE_LISTEN", format!("127.0.0.1:{store_port}"))
        .env(
            "MAILSTORE_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("m.db").display()),
        )
        .env("MAILSTORE_ADMIN_LISTEN", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = StoreClient::new(&format!("http://127.0.0.1:{store_port}"));
    wait_until("store", Duration::from_secs(20), || {
        let mut a = client.admin();
        async move {
            a.list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
                .await
                .is_ok()
        }
    })
    .await;
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("serving"), "no log lines captured: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped logs: {text:?}"
    );
}
