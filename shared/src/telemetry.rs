//! Logs and traces for every target: human text on a terminal, JSON lines
//! otherwise (containers); spans exported over OTLP/gRPC when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (over TLS for an `https://` endpoint,
//! verified against `OTEL_EXPORTER_OTLP_CERTIFICATE` or the system's roots).
//! The W3C propagator is installed either way, so a process without an
//! exporter still passes context on.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use tonic::transport::{Certificate, ClientTlsConfig};

use crate::config::{LogConfig, LogFormat};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("cannot read OTEL_EXPORTER_OTLP_CERTIFICATE {path}: {source}")]
    Certificate {
        path: String,
        source: std::io::Error,
    },
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes buffered spans when dropped; hold it until the process exits.
#[must_use = "spans are lost unless the guard lives until exit"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("netward: flushing spans failed: {error}");
        }
    }
}

/// Installs the global subscriber for `service`. Must run inside a Tokio
/// runtime (the OTLP exporter spawns onto it). `env` is the process
/// environment (`RUST_LOG`, `OTEL_EXPORTER_OTLP_ENDPOINT`).
pub fn init(
    service: &str,
    log: &LogConfig,
    env: &HashMap<String, String>,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter_text = env.get("RUST_LOG").unwrap_or(&log.filter).clone();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(&filter_text)
        .map_err(|source| TelemetryError::Filter {
            filter: filter_text.clone(),
            source,
        })?;
    let json = match log.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };

    let mut provider = None;
    let otel_layer = match env
        .get("OTEL_EXPORTER_OTLP_ENDPOINT")
        .filter(|e| !e.is_empty())
    {
        Some(endpoint) => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone());
            if endpoint.starts_with("https://") {
                builder = builder.with_tls_config(otlp_tls(env)?);
            }
            let exporter = builder.build().map_err(|source| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                source,
            })?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(format!("netward-{service}"))
                .build();
            let sdk = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = sdk.tracer("netward");
            provider = Some(sdk);
            // Spans get their own filter: the log filter may be at `warn`,
            // which would otherwise drop every span before it is exported.
            let spans = Targets::new()
                .with_target("netward", LevelFilter::INFO)
                .with_default(LevelFilter::WARN);
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(spans),
            )
        }
        None => None,
    };

    Registry::default()
        .with(fmt_layer.with_filter(filter))
        .with(otel_layer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// TLS towards an `https://` collector: its certificate is verified against
/// the PEM file of `OTEL_EXPORTER_OTLP_CERTIFICATE` (the OpenTelemetry
/// variable) when set, else against the system's roots.
fn otlp_tls(env: &HashMap<String, String>) -> Result<ClientTlsConfig, TelemetryError> {
    match env
        .get("OTEL_EXPORTER_OTLP_CERTIFICATE")
        .filter(|p| !p.is_empty())
    {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TelemetryError::Certificate {
                path: path.clone(),
                source,
            })?;
            Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        }
        None => Ok(ClientTlsConfig::new().with_native_roots()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_collector_is_accepted() {
        let env = HashMap::from([(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
            "https://127.0.0.1:4317".to_string(),
        )]);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint("https://127.0.0.1:4317")
            .with_tls_config(otlp_tls(&env).unwrap())
            .build();
        assert!(exporter.is_ok(), "{:?}", exporter.err());

        let missing = HashMap::from([(
            "OTEL_EXPORTER_OTLP_CERTIFICATE".to_string(),
            "/nonexistent/ca.pem".to_string(),
        )]);
        let error = otlp_tls(&missing).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
