//! W3C trace-context propagation across services. Unary calls carry it in
//! gRPC metadata (`traceparent`, `tracestate` headers); long-lived streams
//! carry it per message in a `TraceContext` field, because one stream spans
//! many cycles and each message belongs to its own trace.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::proto::v1::TraceContext;

/// The current span's context as a message field (empty when no tracer is
/// installed or the span is not sampled).
pub fn current() -> TraceContext {
    let mut carrier = MessageCarrier::default();
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut carrier)
    });
    carrier.0
}

/// Makes `span` a child of the context a message carried. A message without
/// one (or with garbage) leaves the span a root: tracing is best effort.
pub fn set_parent(span: &tracing::Span, message: Option<&TraceContext>) {
    if let Some(message) = message.filter(|m| !m.traceparent.is_empty()) {
        let cx = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&MessageReader(message))
        });
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's context into outgoing gRPC metadata.
pub fn inject_metadata(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&cx, &mut MetadataWriter(metadata))
    });
}

/// Reads the caller's context from incoming HTTP/2 headers.
pub fn extract_headers(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderReader(headers))
    })
}

#[derive(Default)]
struct MessageCarrier(TraceContext);

impl Injector for MessageCarrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            "traceparent" => self.0.traceparent = value,
            "tracestate" => self.0.tracestate = value,
            _ => {}
        }
    }
}

struct MessageReader<'a>(&'a TraceContext);

impl Extractor for MessageReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.0.traceparent.as_str()),
            "tracestate" if !self.0.tracestate.is_empty() => Some(self.0.tracestate.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

struct MetadataWriter<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderReader<'a>(&'a http::HeaderMap);

impl Extractor for HeaderReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}
