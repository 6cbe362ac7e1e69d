//! One span per incoming call, child of the caller's W3C context when the
//! call carried one, so traces continue across services.

use std::task::{Context, Poll};

use tower::{Layer, Service};
use tracing::Instrument;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::trace_context;

#[derive(Clone, Debug)]
pub struct TraceLayer {
    service: &'static str,
}

impl TraceLayer {
    /// `service` is the netward target, recorded on every span.
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = TraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceService {
            inner,
            service: self.service,
        }
    }
}

#[derive(Clone, Debug)]
pub struct TraceService<S> {
    inner: S,
    service: &'static str,
}

impl<S, B> Service<http::Request<B>> for TraceService<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = request.uri().path(),
            otel.kind = "server",
            rpc.system = "grpc",
            netward.target = self.service,
        );
        let parent = trace_context::extract_headers(request.headers());
        let _ = span.set_parent(parent);
        self.inner.call(request).instrument(span)
    }
}
