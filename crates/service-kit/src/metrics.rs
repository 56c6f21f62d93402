//! The OpenTelemetry instruments every service records into. They come
//! from the global meter, so they export when [`crate::telemetry::init`]
//! installed an OTLP meter provider and cost next to nothing otherwise.
//! Names follow OpenTelemetry conventions (dot-separated, unit in `unit`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};

pub struct Metrics {
    /// Open client connections, by service and listener.
    pub connections: UpDownCounter<i64>,
    /// Protocol commands, by service, command and outcome.
    pub commands: Counter<u64>,
    /// Command latency, by service and command.
    pub command_duration: Histogram<f64>,
    /// SMTP/LMTP deliveries, by outcome.
    pub deliveries: Counter<u64>,
    /// Failed logins, by reason.
    pub auth_failures: Counter<u64>,
    /// Store RPC latency (server side), by method.
    pub store_rpc_duration: Histogram<f64>,
    /// Database pool connections, by state (used, idle).
    pub db_pool: opentelemetry::metrics::Gauge<u64>,
    /// Lookups in a gateway's cache of immutable message data, by service
    /// and result (hit, miss).
    pub cache_lookups: Counter<u64>,
    /// Sieve scripts run at delivery, by outcome (ok, error).
    pub sieve_runs: Counter<u64>,
    /// Sieve actions taken at delivery, by kind (keep, fileinto, discard,
    /// reject, redirect, vacation, vacation_skipped, bounce...).
    pub sieve_actions: Counter<u64>,
    /// Messages waiting in the outbox, as the last claim saw them.
    pub outbox_depth: opentelemetry::metrics::Gauge<u64>,
    /// Outbox messages handed to the relay, by outcome (sent, failed,
    /// expired, refused).
    pub outbox_sends: Counter<u64>,
}

/// Bucket bounds (seconds) of the latency histograms. The SDK's default
/// bounds (0, 5, 10, 25, ... 10000) suit milliseconds: with latencies in
/// seconds every sample would land in the first bucket and a p50/p99 from
/// `histogram_quantile` would say nothing.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = opentelemetry::global::meter("mail");
        Metrics {
            connections: m
                .i64_up_down_counter("mail.connections.open")
                .with_description("Open client connections")
                .build(),
            commands: m
                .u64_counter("mail.commands")
                .with_description("Protocol commands handled")
                .build(),
            command_duration: m
                .f64_histogram("mail.command.duration")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .with_description("Protocol command latency")
                .build(),
            deliveries: m
                .u64_counter("mail.deliveries")
                .with_description("Messages received over SMTP/LMTP, by outcome")
                .build(),
            auth_failures: m
                .u64_counter("mail.auth.failures")
                .with_description("Failed logins")
                .build(),
            store_rpc_duration: m
                .f64_histogram("mail.store.rpc.duration")
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .with_description("Store RPC latency")
                .build(),
            db_pool: m
                .u64_gauge("mail.db.pool.connections")
                .with_description("Database pool connections")
                .build(),
            cache_lookups: m
                .u64_counter("mail.cache.lookups")
                .with_description("Gateway cache lookups, by result")
                .build(),
            sieve_runs: m
                .u64_counter("mail.sieve.runs")
                .with_description("Sieve scripts run at delivery, by outcome")
                .build(),
            sieve_actions: m
                .u64_counter("mail.sieve.actions")
                .with_description("Sieve actions taken at delivery, by kind")
                .build(),
            outbox_depth: m
                .u64_gauge("mail.outbox.depth")
                .with_description("Messages waiting in the outbox")
                .build(),
            outbox_sends: m
                .u64_counter("mail.outbox.sends")
                .with_description("Outbox messages handed to the relay, by outcome")
                .build(),
        }
    })
}

/// Counts kept in the process beside the exported instruments, served as
/// text on the admin port's `/counters` (see [`counters_text`]): what a
/// benchmark reads before and after a run to say how many store RPCs an
/// IMAP command costs, without an OpenTelemetry collector.
fn local_counters() -> &'static Mutex<HashMap<String, u64>> {
    static C: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    C.get_or_init(Mutex::default)
}

/// Names counted apart before the rest go under `PREFIXother`: the names
/// come from the peer (a store RPC's path), so the map stays bounded.
const MAX_COUNTERS: usize = 1024;

fn bump(prefix: &str, name: &str) {
    let mut map = local_counters().lock().unwrap_or_else(|p| p.into_inner());
    bump_in(&mut map, prefix, name);
}

fn bump_in(map: &mut HashMap<String, u64>, prefix: &str, name: &str) {
    let key = format!("{prefix}{name}");
    if let Some(n) = map.get_mut(&key) {
        *n += 1;
    } else if map.len() < MAX_COUNTERS {
        map.insert(key, 1);
    } else {
        *map.entry(format!("{prefix}other")).or_default() += 1;
    }
}

/// Every local counter, one `name value` line each, sorted by name:
/// `command.SERVICE.COMMAND` and `store_rpc.METHOD`.
pub fn counters_text() -> String {
    let map = local_counters().lock().unwrap_or_else(|p| p.into_inner());
    let mut lines: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    lines.sort_unstable();
    lines.concat()
}

/// Records one command: its count by outcome and its latency. The command
/// is recorded in upper case and the outcome in lower case (`ok`, and e.g.
/// `no`/`bad` for IMAP, `error`/`temporary` elsewhere), so dashboards and
/// alerts can count `outcome!="ok"` across every protocol.
pub fn command(service: &'static str, command: &str, outcome: &str, started: Instant) {
    bump(
        &format!("command.{service}."),
        &command.to_ascii_uppercase(),
    );
    let m = metrics();
    m.commands.add(
        1,
        &[
            KeyValue::new("service", service),
            KeyValue::new("command", command.to_ascii_uppercase()),
            KeyValue::new("outcome", outcome.to_ascii_lowercase()),
        ],
    );
    m.command_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            KeyValue::new("service", service),
            KeyValue::new("command", command.to_ascii_uppercase()),
        ],
    );
}

/// Counts a connection as open until dropped.
pub struct ConnectionGauge {
    attrs: [KeyValue; 1],
}

impl ConnectionGauge {
    pub fn open(listener: &'static str) -> Self {
        let attrs = [KeyValue::new("listener", listener)];
        metrics().connections.add(1, &attrs);
        Self { attrs }
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics().connections.add(-1, &self.attrs);
    }
}

/// Records a store RPC's latency (server side).
pub fn store_rpc(method: &str, started: Instant) {
    bump("store_rpc.", method);
    metrics().store_rpc_duration.record(
        started.elapsed().as_secs_f64(),
        &[KeyValue::new("method", method.to_string())],
    );
}

/// Counts a failed login.
pub fn auth_failure(reason: &'static str) {
    metrics()
        .auth_failures
        .add(1, &[KeyValue::new("reason", reason)]);
}

/// Counts a received message by outcome (accepted, temporary, rejected).
pub fn delivery(outcome: &'static str) {
    metrics()
        .deliveries
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

/// Records database pool use (`used` and `idle` connections).
pub fn db_pool(open: u64, idle: u64) {
    let g = &metrics().db_pool;
    g.record(open.saturating_sub(idle), &[KeyValue::new("state", "used")]);
    g.record(idle, &[KeyValue::new("state", "idle")]);
}

/// Counts one lookup in a gateway's message cache.
pub fn cache_lookup(service: &'static str, hit: bool) {
    metrics().cache_lookups.add(
        1,
        &[
            KeyValue::new("service", service),
            KeyValue::new("result", if hit { "hit" } else { "miss" }),
        ],
    );
}

/// Counts one Sieve script run (`ok` or `error`).
pub fn sieve_run(outcome: &'static str) {
    bump("sieve_run.", outcome);
    metrics()
        .sieve_runs
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

/// Counts one Sieve action by kind.
pub fn sieve_action(kind: &'static str) {
    bump("sieve_action.", kind);
    metrics()
        .sieve_actions
        .add(1, &[KeyValue::new("kind", kind)]);
}

/// Records the outbox's depth.
pub fn outbox_depth(n: u64) {
    metrics().outbox_depth.record(n, &[]);
}

/// Counts one outbox send attempt by outcome.
pub fn outbox_send(outcome: &'static str) {
    bump("outbox_send.", outcome);
    metrics()
        .outbox_sends
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_stay_bounded_whatever_names_peers_send() {
        let mut map = HashMap::new();
        for i in 0..MAX_COUNTERS + 500 {
            bump_in(&mut map, "store_rpc.", &format!("/x/{i}"));
        }
        bump_in(&mut map, "store_rpc.", "/x/0");
        assert!(map.len() <= MAX_COUNTERS + 1, "{}", map.len());
        assert_eq!(map["store_rpc./x/0"], 2);
        assert_eq!(map["store_rpc.other"], 500);
    }
}
