//! Telemetry: `tracing` logs (text or JSON, filtered by `RUST_LOG`) and,
//! when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set, OpenTelemetry
//! export of spans and metrics over OTLP/gRPC. `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` name the resource. Without the endpoint no
//! exporter exists, so nothing is sent and nothing complains.
//!
//! The W3C trace context crosses gRPC calls: [`inject`] writes the current
//! span's context into outgoing metadata, [`extract`] reads it on the
//! server side.

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::level_filters::LevelFilter;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The exporters of this process, flushed by [`Telemetry::shutdown`].
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

static INIT: OnceLock<()> = OnceLock::new();

/// Installs logging and (with `OTEL_EXPORTER_OTLP_ENDPOINT`) OTLP export.
/// Only the first call in a process installs anything; later calls return
/// an empty guard. Must run inside the Tokio runtime.
pub fn init(service: &'static str, format: LogFormat) -> Telemetry {
    let mut guard = Telemetry {
        tracer: None,
        meter: None,
    };
    if INIT.set(()).is_err() {
        return guard;
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otlp = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let resource = || {
        let b = opentelemetry_sdk::Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|s| !s.is_empty()) {
            b.build()
        } else {
            b.with_service_name(service).build()
        }
    };
    let mut otel_layer = None;
    if otlp.is_some() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build();
                let tracer = provider.tracer(service);
                // The exporter's own gRPC stack must not trace itself.
                let quiet = Targets::new()
                    .with_default(LevelFilter::INFO)
                    .with_target("h2", LevelFilter::OFF)
                    .with_target("hyper", LevelFilter::OFF)
                    .with_target("hyper_util", LevelFilter::OFF)
                    .with_target("tonic", LevelFilter::OFF)
                    .with_target("tower", LevelFilter::OFF)
                    .with_target("opentelemetry", LevelFilter::OFF)
                    .with_target("opentelemetry_sdk", LevelFilter::OFF)
                    .with_target("opentelemetry_otlp", LevelFilter::OFF);
                otel_layer = Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(quiet),
                );
                guard.tracer = Some(provider);
            }
            Err(e) => eprintln!("OTLP span exporter not started: {e}"),
        }
        match opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(exporter) => {
                let provider = SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter)
                    .with_resource(resource())
                    .build();
                opentelemetry::global::set_meter_provider(provider.clone());
                guard.meter = Some(provider);
            }
            Err(e) => eprintln!("OTLP metric exporter not started: {e}"),
        }
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        // Colour only for a person at a terminal: logs written to a file,
        // a pipe or a collector carry no escape codes (NO_COLOR too).
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stdout())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel_layer)
        .try_init();
    tracing::debug!(service, otlp = otlp.is_some(), "telemetry initialised");
    guard
}

impl Telemetry {
    /// Flushes and stops the exporters (their shutdown blocks, so it runs
    /// off the async threads).
    pub async fn shutdown(self) {
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = self.tracer {
                let _ = t.shutdown();
            }
            if let Some(m) = self.meter {
                let _ = m.shutdown();
            }
        })
        .await;
    }
}

struct MapInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The current span's W3C trace context as header pairs (`traceparent`,
/// `tracestate`), for outgoing calls.
pub fn inject() -> Vec<(String, String)> {
    let cx = tracing::Span::current().context();
    let mut out = Vec::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapInjector(&mut out))
    });
    out
}

struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` a child of the trace context in incoming HTTP/gRPC headers.
pub fn extract(headers: &axum::http::HeaderMap, span: &tracing::Span) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}
