//! The Grafana dashboard and the Prometheus alert rules query the metric
//! names the services really export.
//!
//! The real services run as processes (store on SQLite, smtp-ingest,
//! pop3-gateway, imap-gateway) and export OTLP to a receiver run by the
//! test; a little traffic makes every instrument record. The metrics
//! received are translated to the series the OpenTelemetry collector's
//! Prometheus exporter serves (`e2e::otlp::PrometheusExporter`, for the
//! collector version docker-compose.yml pins), and every PromQL expression
//! of deploy/grafana/dashboards/mail.json, deploy/prometheus/rules.yml and
//! the Kubernetes PrometheusRules must select only those series, with only
//! their labels in matchers and `by (...)`. Renaming an instrument, an
//! attribute, or mistyping a query fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use e2e::procs::{Proc, spawn_listening};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::otlp::{PrometheusExporter, Series, start_receiver};
use e2e::{StoreClient, message};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Metrics the rules use that come from elsewhere: Prometheus' own `up`
/// and kube-state-metrics (Kubernetes rules only). Their labels are not
/// checked.
const EXTERNAL_METRICS: &[&str] = &[
    "up",
    "kube_pod_status_ready",
    "kube_deployment_status_replicas_available",
];

/// The instruments of service_kit::metrics, by OTLP name: the traffic below
/// must make each of them record (alice's Sieve script and the relay below
/// make the four of Sieve and the outbox record).
const INSTRUMENTS: usize = 12;

/// A relay that takes every message (smtp-ingest's outbox relay sends
/// alice's redirect to it).
async fn accepting_relay() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"220 relay.test\r\n").await;
                let mut data = false;
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if data {
                        if l != ".\r\n" {
                            continue;
                        }
                        data = false;
                        b"250 queued\r\n"
                    } else if l.to_ascii_uppercase().starts_with("DATA") {
                        data = true;
                        b"354 go on\r\n"
                    } else if l.to_ascii_uppercase().starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Starts `e2e-service <which>` exporting OTLP to `otlp` as `name`.
fn spawn(which: &str, name: &str, otlp: std::net::SocketAddr, env: &[(&str, String)]) -> Proc {
    let mut all = vec![
        ("RUST_LOG", "warn".to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
        ("OTEL_SERVICE_NAME", name.to_string()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.namespace=mail,deployment.environment=test".to_string(),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
    ];
    all.extend(env.iter().cloned());
    e2e::procs::spawn(env!("CARGO_BIN_EXE_e2e-service"), which, &all)
}

/// A line-based client: sends a line, reads reply lines until `done` says
/// the reply is complete.
struct Client {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16) -> Self {
        let (r, w) = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap()
            .into_split();
        Self {
            r: BufReader::new(r),
            w,
        }
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(!l.is_empty(), "connection closed");
        l
    }

    /// Reads lines until one satisfies `last`; returns that line.
    async fn until(&mut self, last: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self.line().await;
            if last(&l) {
                return l;
            }
        }
    }

    async fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// SMTP: a command and its (possibly multi-line) reply.
    async fn smtp(&mut self, cmd: &str) -> String {
        self.send(cmd).await;
        self.until(|l| l.len() < 4 || l.as_bytes()[3] != b'-').await
    }

    /// IMAP: a tagged command and its tagged reply.
    async fn imap(&mut self, tag: &str, cmd: &str) -> String {
        self.send(&format!("{tag} {cmd}")).await;
        let t = format!("{tag} ");
        self.until(|l| l.starts_with(&t)).await
    }

    /// POP3: a command and its status line (and the listing up to `.` when
    /// `multi`).
    async fn pop3(&mut self, cmd: &str, multi: bool) -> String {
        self.send(cmd).await;
        let status = self.line().await;
        if multi && status.starts_with("+OK") {
            self.until(|l| l == ".\r\n").await;
        }
        status
    }
}

/// Makes every instrument record: connections and commands on all three
/// protocols, an SMTP delivery and a refused RCPT, a failed login, store
/// RPCs, and IMAP FETCHes through the gateway's cache.
async fn traffic(smtp: u16, pop3: u16, imap: u16) {
    let mut c = Client::connect(smtp).await;
    c.until(|l| l.starts_with("220 ")).await;
    assert!(c.smtp("EHLO dashboard.example").await.starts_with("250"));
    assert!(
        c.smtp("MAIL FROM:<a@remote.example>")
            .await
            .starts_with("250")
    );
    let refused = c.smtp("RCPT TO:<nobody@example.org>").await;
    assert!(refused.starts_with('5'), "{refused}");
    assert!(
        c.smtp("RCPT TO:<alice@example.org>")
            .await
            .starts_with("250")
    );
    assert!(c.smtp("DATA").await.starts_with("354"));
    c.w.write_all(&message("dashboard-1", "for the dashboard test"))
        .await
        .unwrap();
    let done = c.smtp(".").await;
    assert!(done.starts_with("250"), "{done}");
    c.smtp("QUIT").await;

    let mut c = Client::connect(imap).await;
    c.line().await;
    let failed = c.imap("a", "LOGIN alice@example.org wrong").await;
    assert!(failed.starts_with("a NO"), "{failed}");
    let ok = c.imap("b", "LOGIN alice@example.org pw").await;
    assert!(ok.starts_with("b OK"), "{ok}");
    assert!(c.imap("c", "SELECT INBOX").await.starts_with("c OK"));
    // The first FETCH fills the cache, the second finds it there.
    assert!(
        c.imap("d", "FETCH 1 (BODY.PEEK[])")
            .await
            .starts_with("d OK")
    );
    assert!(
        c.imap("e", "FETCH 1 (BODY.PEEK[])")
            .await
            .starts_with("e OK")
    );
    c.imap("f", "LOGOUT").await;

    let mut c = Client::connect(pop3).await;
    let greeting = c.line().await;
    // Each reply is shown when it is not +OK (a failure once seen under
    // load said nothing of why).
    let user = c.pop3("USER alice@example.org", false).await;
    assert!(
        user.starts_with("+OK"),
        "greeting {greeting:?}, USER: {user:?}"
    );
    let pass = c.pop3("PASS pw", false).await;
    assert!(pass.starts_with("+OK"), "PASS: {pass:?}");
    assert!(c.pop3("STAT", false).await.starts_with("+OK"));
    assert!(c.pop3("LIST", true).await.starts_with("+OK"));
    assert!(c.pop3("RETR 1", true).await.starts_with("+OK"));
    c.pop3("QUIT", false).await;
}

/// Every PromQL expression of the dashboard, with where it is. Also checks
/// the JSON is a dashboard: uid, title, panels, and an expr in every
/// target of every panel (rows aside).
fn dashboard_exprs(rel: &str) -> Vec<(String, String)> {
    let d: serde_json::Value = serde_json::from_str(&read(rel)).unwrap();
    for k in ["uid", "title"] {
        assert!(
            d[k].as_str().is_some_and(|s| !s.is_empty()),
            "{rel}: no {k}"
        );
    }
    let top = d["panels"].as_array().expect("panels");
    assert!(!top.is_empty(), "{rel}: no panels");
    // Collapsed rows keep their panels inside.
    let panels = top
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()));
    let mut out = Vec::new();
    for p in panels {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or_default().to_string();
        assert!(!title.is_empty(), "{rel}: a panel without title");
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "{rel}: panel {title:?} has no targets");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "{rel}: panel {title:?} has a target without expr"
            );
            out.push((format!("{rel}: panel {title:?}"), expr.to_string()));
        }
    }
    out
}

/// Every `expr:` of a Prometheus rules file or PrometheusRule manifest.
/// Reads the YAML by lines (no YAML crate here): the value after `expr:`,
/// with every following line indented deeper (block scalars `|`/`>`,
/// wrapped plain or quoted scalars). scripts/check-deploy parses the same
/// files with a real YAML parser; the count of rules found here is
/// checked against the count of `alert:`/`record:` keys.
fn rule_exprs(rel: &str) -> Vec<(String, String)> {
    let text = read(rel);
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key = |l: &str| l.trim_start().trim_start_matches("- ").to_string();
    let mut out = Vec::new();
    let mut rules = 0;
    let mut name = String::new();
    for (i, line) in lines.iter().enumerate() {
        let k = key(line);
        if let Some(n) = k
            .strip_prefix("alert:")
            .or_else(|| k.strip_prefix("record:"))
        {
            rules += 1;
            name = n.trim().to_string();
        }
        let Some(rest) = k.strip_prefix("expr:") else {
            continue;
        };
        // The key's column: after any `- ` of a list item.
        let col = indent(line) + (line.trim_start().len() - k.len());
        let mut parts = vec![rest.trim().to_string()];
        for l in &lines[i + 1..] {
            if !l.trim().is_empty() && indent(l) <= col {
                break;
            }
            parts.push(l.trim().to_string());
        }
        let first = parts[0].clone();
        let body = if first.starts_with('|') || first.starts_with('>') {
            parts[1..].join("\n")
        } else {
            parts.join(" ")
        };
        let body = body.trim();
        let expr = if let Some(s) = body.strip_prefix('\'') {
            s.strip_suffix('\'').unwrap_or(s).replace("''", "'")
        } else if let Some(s) = body.strip_prefix('"') {
            s.strip_suffix('"').unwrap_or(s).replace("\\\"", "\"")
        } else {
            body.to_string()
        };
        out.push((format!("{rel}: rule {name}"), expr));
    }
    assert_eq!(
        out.len(),
        rules,
        "{rel}: {rules} alert/record rules, {} expr found",
        out.len()
    );
    assert!(rules > 0, "{rel}: no rules");
    out
}

/// The problems of one expression against the exported series.
fn check_expr(where_: &str, expr: &str, series: &Series) -> Vec<String> {
    let refs = match e2e::promql::refs(expr) {
        Ok(r) => r,
        Err(e) => return vec![format!("{where_}: cannot read {expr:?}: {e}")],
    };
    let mut errors = Vec::new();
    let ours = |m: &str| !EXTERNAL_METRICS.contains(&m);
    if refs.selectors.is_empty() {
        errors.push(format!("{where_}: {expr:?} selects no metric"));
    }
    let mut need = |metric: &str, label: &str, why: &str| {
        if !ours(metric) {
            return;
        }
        match series.get(metric) {
            None => {} // reported once below
            Some(labels) if labels.contains(label) => {}
            Some(labels) => errors.push(format!(
                "{where_}: {metric} has no label {label:?} ({why}); it has {labels:?}"
            )),
        }
    };
    for (metric, labels) in &refs.selectors {
        for l in labels {
            need(metric, l, "matcher");
        }
    }
    for (labels, metrics) in &refs.groupings {
        for m in metrics {
            for l in labels {
                need(m, l, "by/without");
            }
        }
    }
    let all: Vec<&str> = refs.metrics().collect();
    for l in &refs.matching {
        for m in &all {
            need(m, l, "on/ignoring/group_*");
        }
    }
    for m in all {
        if ours(m) && !series.contains_key(m) {
            errors.push(format!("{where_}: {m} is not exported"));
        }
    }
    // One line per problem, however often the expression repeats it.
    let mut seen = BTreeSet::new();
    errors.retain(|e| seen.insert(e.clone()));
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_queries_use_exported_metric_names() {
    // The translation in e2e::otlp is the one of this collector version
    // with this exporter configuration.
    let compose = read("docker-compose.yml");
    assert!(
        compose.contains("otel/opentelemetry-collector-contrib:0.115.0"),
        "the collector version changed: check e2e::otlp::PrometheusExporter against \
         its prometheus exporter's naming, then update this test"
    );
    let collector = read("deploy/otel-collector.yaml");
    assert!(
        !collector.contains("namespace: ") && !collector.contains("add_metric_suffixes"),
        "deploy/otel-collector.yaml: the prometheus exporter settings changed; \
         update e2e::otlp::PrometheusExporter::mail()"
    );

    let (received, otlp) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    // Each service on a port of its own, and waited for until that very
    // process listens there: a port that another process took between
    // free_port() and the service's bind (the service then exits) would
    // otherwise be answered by that other process.
    let (_store, store_port) = spawn_listening(|port| {
        spawn(
            "store",
            "mailbox-store",
            otlp,
            &[
                ("MAILSTORE_LISTEN", format!("127.0.0.1:{port}")),
                (
                    "MAILSTORE_DATABASE_URL",
                    format!("sqlite://{}", dir.path().join("m.db").display()),
                ),
                ("MAILSTORE_ADMIN_LISTEN", String::new()),
                ("MAILSTORE_FAILURE_DELAY_MS", "0".into()),
            ],
        )
    })
    .await;
    let store_url = format!("http://127.0.0.1:{store_port}");
    let relay_port = accepting_relay().await;
    let ((_smtp, smtp_port), (_pop3, pop3_port), (_imap, imap_port)) = tokio::join!(
        spawn_listening(|port| spawn(
            "smtp",
            "smtp-ingest",
            otlp,
            &[
                ("SMTP_LISTEN", format!("127.0.0.1:{port}")),
                ("SMTP_LMTP_LISTEN", String::new()),
                ("SMTP_STORE_URL", store_url.clone()),
                ("SMTP_ADMIN_LISTEN", String::new()),
                ("SMTP_RELAY_HOST", "127.0.0.1".into()),
                ("SMTP_RELAY_PORT", relay_port.to_string()),
                ("SMTP_RELAY_TLS", "none".into()),
                ("SMTP_RELAY_POLL_SECS", "1".into()),
            ],
        )),
        spawn_listening(|port| spawn(
            "pop3",
            "pop3-gateway",
            otlp,
            &[
                ("POP3_LISTEN", format!("127.0.0.1:{port}")),
                ("POP3_STORE_URL", store_url.clone()),
                ("POP3_ADMIN_LISTEN", String::new()),
            ],
        )),
        spawn_listening(|port| spawn(
            "imap",
            "imap-gateway",
            otlp,
            &[
                ("IMAP_LISTEN", format!("127.0.0.1:{port}")),
                ("IMAP_STORE_URL", store_url.clone()),
                ("IMAP_ADMIN_LISTEN", String::new()),
            ],
        )),
    );
    let client = StoreClient::new(&store_url);
    let start = Instant::now();
    while client
        .admin()
        .list_domains(e2e::mailbox_api::pb::ListDomainsRequest {})
        .await
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "store not up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.add_domain("example.org").await;
    client.add_account("alice@example.org", "pw").await;
    // A Sieve script that keeps the message and sends a copy on: the
    // delivery runs it and the outbox relay sends the copy.
    let channel = e2e::mailbox_api::channel(&store_url).unwrap();
    let token = e2e::mailbox_api::mailbox_client(channel.clone(), Default::default())
        .authenticate(e2e::mailbox_api::pb::AuthenticateRequest {
            username: "alice@example.org".into(),
            password: "pw".into(),
            client_ip: "127.0.0.1".into(),
            protocol: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_token;
    let mut sieve = e2e::mailbox_api::sieve_client(
        channel,
        e2e::mailbox_api::CallAuth::default()
            .with_session(&token)
            .unwrap(),
    );
    let put = sieve
        .put_script(e2e::mailbox_api::pb::PutScriptRequest {
            name: "copy".into(),
            content: b"require \"copy\";\r\nredirect :copy \"elsewhere@remote.example\";\r\n"
                .to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(put.error.is_none(), "{:?}", put.error);
    sieve
        .set_active(e2e::mailbox_api::pb::SetActiveRequest {
            name: "copy".into(),
        })
        .await
        .unwrap();
    traffic(smtp_port, pop3_port, imap_port).await;

    // Every instrument, from every process, reaches the receiver.
    let start = Instant::now();
    loop {
        let names = received.metric_names();
        let ours = names.iter().filter(|n| n.starts_with("mail.")).count();
        if ours >= INSTRUMENTS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only these metrics arrived: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // One more export round, so each process' last points are in.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let series = received.prometheus_series(&PrometheusExporter::mail());
    let listing = series
        .iter()
        .map(|(n, l)| format!("  {n} {l:?}"))
        .collect::<Vec<_>>()
        .join("\n");

    let dash = dashboard_exprs("deploy/grafana/dashboards/mail.json");
    let mut exprs = dash.clone();
    exprs.extend(rule_exprs("deploy/prometheus/rules.yml"));
    exprs.extend(rule_exprs(
        "deploy/k8s/components/monitoring/prometheusrule.yaml",
    ));
    let mut errors = Vec::new();
    for (where_, expr) in &exprs {
        errors.extend(check_expr(where_, expr, &series));
    }

    // The other way round: the dashboard shows every instrument.
    let used: BTreeSet<String> = dash
        .iter()
        .filter_map(|(_, e)| e2e::promql::refs(e).ok())
        .flat_map(|r| r.metrics().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for (name, prom) in received.prometheus_names(&PrometheusExporter::mail()) {
        if name.starts_with("mail.") && prom.is_disjoint(&used) {
            errors.push(format!(
                "deploy/grafana/dashboards/mail.json: no panel shows {name} ({prom:?})"
            ));
        }
    }
    assert!(
        errors.is_empty(),
        "{} problem(s):\n{}\n\nexported series (label names):\n{listing}",
        errors.len(),
        errors.join("\n")
    );
}
