//! An OTLP/gRPC receiver for tests (what the OpenTelemetry collector would
//! receive from the services), and the translation the collector's
//! Prometheus exporter applies to the metrics it receives, so tests can
//! check Prometheus queries against the series the services really produce.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

/// Everything the receiver was sent, in arrival order.
#[derive(Clone, Default)]
pub struct Received {
    pub traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    pub metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts an OTLP/gRPC receiver (traces and metrics) on 127.0.0.1:0 for
/// the life of the runtime; point `OTEL_EXPORTER_OTLP_ENDPOINT` at
/// `http://{addr}`.
pub async fn start_receiver() -> (Received, SocketAddr) {
    let r = Received::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = r.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(svc.clone()))
            .add_service(MetricsServiceServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
    );
    (r, addr)
}

impl Received {
    /// The names of the metrics received so far (OTLP names, e.g.
    /// `mail.commands`).
    pub fn metric_names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for req in self.metrics.lock().unwrap().iter() {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    out.extend(sm.metrics.iter().map(|m| m.name.clone()));
                }
            }
        }
        out
    }

    /// The Prometheus series the collector's `prometheus` exporter would
    /// serve for everything received so far: series name -> label names
    /// (see [`PrometheusExporter`]).
    pub fn prometheus_series(&self, exporter: &PrometheusExporter) -> Series {
        let mut out = Series::new();
        for req in self.metrics.lock().unwrap().iter() {
            for rm in &req.resource_metrics {
                let resource = rm
                    .resource
                    .as_ref()
                    .map(|r| r.attributes.as_slice())
                    .unwrap_or_default();
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        exporter.translate(m, resource, &mut out);
                    }
                }
            }
        }
        out
    }
}

impl Received {
    /// For each OTLP metric name received, the Prometheus series names it
    /// becomes (see [`PrometheusExporter`]).
    pub fn prometheus_names(
        &self,
        exporter: &PrometheusExporter,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for req in self.metrics.lock().unwrap().iter() {
            for rm in &req.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in &sm.metrics {
                        let mut one = Series::new();
                        exporter.translate(m, &[], &mut one);
                        out.entry(m.name.clone())
                            .or_default()
                            .extend(one.into_keys());
                    }
                }
            }
        }
        out
    }
}

/// Prometheus series name -> the label names seen on it.
pub type Series = BTreeMap<String, BTreeSet<String>>;

/// The OTLP -> Prometheus translation of the collector's `prometheus`
/// exporter as deploy/otel-collector.yaml configures it, for the
/// opentelemetry-collector-contrib version docker-compose.yml pins
/// (0.115.0): `add_metric_suffixes` at its default (true) with the
/// `pkg.translator.prometheus.NormalizeName` feature gate in its default
/// state there (beta, enabled), so names are fully normalised:
///
/// - the OTLP name is split into words at every character that is not a
///   letter or digit (`mail.command.duration` -> mail, command, duration);
/// - the unit's Prometheus word is appended unless already one of the
///   words (`s` -> `seconds`, `By` -> `bytes`, ...; units in braces such as
///   `{connection}` add nothing; `a/b` adds `a` then `per` `b`);
/// - monotonic sums (counters) end in `total`; gauges with unit `1` in
///   `ratio`;
/// - `namespace` comes first, and the words are joined with `_`;
/// - histograms become `<name>_bucket` (with `le`), `<name>_sum` and
///   `<name>_count`; summaries `<name>` (with `quantile`), `_sum`, `_count`.
///
/// Labels: every data point attribute and, with
/// `resource_to_telemetry_conversion`, every resource attribute, with each
/// character other than a letter, digit or `_` replaced by `_` (a leading
/// digit gets `key_`, a single leading `_` gets `key`); plus `job`
/// (`service.namespace/service.name`) when the resource has `service.name`
/// and `instance` when it has `service.instance.id`. Nothing else is
/// assumed (for instance no `otel_scope_*` labels), so a query relying on
/// anything else fails the check rather than passing by luck.
#[derive(Clone, Debug)]
pub struct PrometheusExporter {
    /// `namespace:` of the exporter (none in deploy/otel-collector.yaml:
    /// the instruments are already named `mail.*`).
    pub namespace: String,
    /// `resource_to_telemetry_conversion.enabled`.
    pub resource_to_telemetry: bool,
}

impl PrometheusExporter {
    /// The exporter as deploy/otel-collector.yaml configures it.
    pub fn mail() -> Self {
        Self {
            namespace: String::new(),
            resource_to_telemetry: true,
        }
    }

    /// The Prometheus metric name for an OTLP metric (before the
    /// `_bucket`/`_sum`/`_count` suffixes of histograms and summaries).
    pub fn metric_name(&self, name: &str, unit: &str, kind: Kind) -> String {
        let mut tokens = words(name);
        let (main, per) = match unit.split_once('/') {
            Some((m, p)) => (m.trim(), Some(p.trim())),
            None => (unit.trim(), None),
        };
        if !main.is_empty() && !main.contains(['{', '}']) {
            let w = words(unit_word(main)).join("_");
            if !w.is_empty() && !tokens.contains(&w) {
                tokens.push(w);
            }
        }
        if let Some(per) = per.filter(|p| !p.is_empty() && !p.contains(['{', '}'])) {
            let w = words(per_unit_word(per)).join("_");
            if !w.is_empty() && !tokens.contains(&w) {
                tokens.push("per".into());
                tokens.push(w);
            }
        }
        if kind == Kind::Counter {
            tokens.retain(|w| w != "total");
            tokens.push("total".into());
        }
        if unit == "1" && kind == Kind::Gauge {
            tokens.retain(|w| w != "ratio");
            tokens.push("ratio".into());
        }
        if !self.namespace.is_empty() {
            tokens.insert(0, self.namespace.clone());
        }
        let name = tokens.join("_");
        if name.starts_with(|c: char| c.is_ascii_digit()) {
            format!("_{name}")
        } else {
            name
        }
    }

    /// Adds the series one OTLP metric becomes to `out`.
    pub fn translate(&self, m: &Metric, resource: &[KeyValue], out: &mut Series) {
        let (kind, points): (Kind, Vec<&[KeyValue]>) = match &m.data {
            Some(Data::Gauge(g)) => (
                Kind::Gauge,
                g.data_points
                    .iter()
                    .map(|p| p.attributes.as_slice())
                    .collect(),
            ),
            Some(Data::Sum(s)) => (
                if s.is_monotonic {
                    Kind::Counter
                } else {
                    Kind::Gauge
                },
                s.data_points
                    .iter()
                    .map(|p| p.attributes.as_slice())
                    .collect(),
            ),
            Some(Data::Histogram(h)) => (
                Kind::Histogram,
                h.data_points
                    .iter()
                    .map(|p| p.attributes.as_slice())
                    .collect(),
            ),
            Some(Data::Summary(s)) => (
                Kind::Summary,
                s.data_points
                    .iter()
                    .map(|p| p.attributes.as_slice())
                    .collect(),
            ),
            // The exporter of the pinned version has no Prometheus form for
            // exponential histograms; the services record none.
            Some(Data::ExponentialHistogram(_)) | None => return,
        };
        let base = self.metric_name(&m.name, &m.unit, kind);
        let mut common: BTreeSet<String> = BTreeSet::new();
        if self.resource_to_telemetry {
            common.extend(resource.iter().map(|kv| label_name(&kv.key)));
        }
        if resource.iter().any(|kv| kv.key == "service.name") {
            common.insert("job".into());
        }
        if resource.iter().any(|kv| kv.key == "service.instance.id") {
            common.insert("instance".into());
        }
        for attrs in points {
            let mut labels = common.clone();
            labels.extend(attrs.iter().map(|kv| label_name(&kv.key)));
            let mut add = |name: String, extra: Option<&str>| {
                let set = out.entry(name).or_default();
                set.extend(labels.iter().cloned());
                set.extend(extra.map(str::to_string));
            };
            match kind {
                Kind::Gauge | Kind::Counter => add(base.clone(), None),
                Kind::Histogram => {
                    add(format!("{base}_bucket"), Some("le"));
                    add(format!("{base}_sum"), None);
                    add(format!("{base}_count"), None);
                }
                Kind::Summary => {
                    add(base.clone(), Some("quantile"));
                    add(format!("{base}_sum"), None);
                    add(format!("{base}_count"), None);
                }
            }
        }
    }
}

/// The OTLP metric type, as far as the Prometheus translation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Gauges and non-monotonic sums (up/down counters).
    Gauge,
    /// Monotonic sums.
    Counter,
    Histogram,
    Summary,
}

pub use opentelemetry_proto::tonic::metrics::v1::Metric;

/// The words of a name: runs of letters and digits.
fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The Prometheus word for an OTLP (UCUM) unit; unknown units stay as they
/// are.
fn unit_word(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The Prometheus word for the unit after `/` (`m/s` -> `per_second`).
fn per_unit_word(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// A Prometheus label name for an attribute key.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("key_{s}");
    } else if s.starts_with('_') && !s.starts_with("__") {
        s = format!("key{s}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_collector_normalisation() {
        let e = PrometheusExporter::mail();
        let n = |name, unit, kind| e.metric_name(name, unit, kind);
        assert_eq!(n("mail.commands", "", Kind::Counter), "mail_commands_total");
        assert_eq!(
            n("mail.command.duration", "s", Kind::Histogram),
            "mail_command_duration_seconds"
        );
        assert_eq!(
            n("mail.connections.open", "", Kind::Gauge),
            "mail_connections_open"
        );
        // A unit already in the name is not repeated; `total` moves last.
        assert_eq!(
            n("http.total.seconds", "s", Kind::Counter),
            "http_seconds_total"
        );
        assert_eq!(n("cpu.usage", "1", Kind::Gauge), "cpu_usage_ratio");
        assert_eq!(n("io", "By/s", Kind::Counter), "io_bytes_per_second_total");
        assert_eq!(n("queue.size", "{message}", Kind::Gauge), "queue_size");
        assert_eq!(e.metric_name("1up", "", Kind::Gauge), "_1up");
        let spaced = PrometheusExporter {
            namespace: "ns".into(),
            resource_to_telemetry: false,
        };
        assert_eq!(
            spaced.metric_name("mail.commands", "", Kind::Counter),
            "ns_mail_commands_total"
        );
    }

    #[test]
    fn labels_are_sanitised() {
        assert_eq!(label_name("service.name"), "service_name");
        assert_eq!(label_name("outcome"), "outcome");
        assert_eq!(label_name("2xx"), "key_2xx");
        assert_eq!(label_name("_private"), "key_private");
        assert_eq!(label_name("__reserved"), "__reserved");
    }
}
