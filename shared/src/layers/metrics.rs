//! Per-RPC request metrics: `netward_grpc_server_requests_total{service,
//! method,code}` when a call ends and
//! `netward_grpc_server_request_duration_seconds{service,method}` when its
//! response headers are ready.
//!
//! The duration is the time from the request's arrival to the response
//! headers: the whole call for a unary RPC, the time to open the stream for
//! a streaming one. The code is the `grpc-status` of the response headers
//! (a trailers-only response: an error before any message) or else of the
//! trailers, read as the body ends. A call that ends without a status — the
//! client went away, the server's request timeout cut it (the client then
//! sees DEADLINE_EXCEEDED), or a stream was cut at shutdown — counts as
//! `CANCELLED`; an error from the inner service (no response at all) as
//! `UNKNOWN`. Labels are bounded: a path that is not a served method counts
//! as service and method `unknown`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

pub const REQUESTS_TOTAL: &str = "netward_grpc_server_requests_total";
pub const REQUEST_DURATION: &str = "netward_grpc_server_request_duration_seconds";

const UNKNOWN: &str = "unknown";

/// A served method's labels, keyed by its path `/package.Service/Method`.
type Methods = HashMap<String, (Arc<str>, Arc<str>)>;

#[derive(Clone, Debug)]
pub struct MetricsLayer {
    methods: Arc<Methods>,
}

impl MetricsLayer {
    /// `methods` are the `(service, method)` pairs served, by full names
    /// (`netward.v1.Inventory`, `GetDevice`); any other path is `unknown`.
    pub fn new<'a>(methods: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let methods = methods
            .into_iter()
            .map(|(service, method)| {
                (
                    format!("/{service}/{method}"),
                    (Arc::from(service), Arc::from(method)),
                )
            })
            .collect();
        Self {
            methods: Arc::new(methods),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            methods: self.methods.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    methods: Arc<Methods>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = match self.methods.get(request.uri().path()) {
            Some((service, method)) => (service.to_string(), method.to_string()),
            None => (UNKNOWN.to_owned(), UNKNOWN.to_owned()),
        };
        ResponseFuture {
            inner: self.inner.call(request),
            call: Some(Call {
                service,
                method,
                started: Instant::now(),
                ended: false,
            }),
        }
    }
}

/// One call being measured. Dropped before [`Call::end`], it counts as
/// `CANCELLED`: its future or body was dropped without a status.
#[derive(Debug)]
struct Call {
    service: String,
    method: String,
    started: Instant,
    ended: bool,
}

impl Call {
    fn headers_ready(&self) {
        metrics::histogram!(
            REQUEST_DURATION,
            "service" => self.service.clone(),
            "method" => self.method.clone()
        )
        .record(self.started.elapsed().as_secs_f64());
    }

    fn end(mut self, code: Code) {
        self.ended = true;
        self.count(code);
    }

    fn count(&self, code: Code) {
        metrics::counter!(
            REQUESTS_TOTAL,
            "service" => self.service.clone(),
            "method" => self.method.clone(),
            "code" => code_label(code)
        )
        .increment(1);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.ended {
            self.count(Code::Cancelled);
        }
    }
}

pin_project! {
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<MetricsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let outcome = ready!(this.inner.poll(cx));
        let call = this.call.take().expect("polled after completion");
        call.headers_ready();
        Poll::Ready(match outcome {
            Ok(response) => {
                let call = match grpc_status(response.headers()) {
                    // Trailers-only: the status is already known.
                    Some(code) => {
                        call.end(code);
                        None
                    }
                    None => Some(call),
                };
                Ok(response.map(|inner| MetricsBody { inner, call }))
            }
            Err(error) => {
                call.end(Code::Unknown);
                Err(error)
            }
        })
    }
}

pin_project! {
    /// The response body, watched for the trailers' `grpc-status`.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: http_body::Body> http_body::Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = this.call.take()
                {
                    call.end(code);
                }
            }
            // A body error resets the stream: the client sees no status.
            Some(Err(_)) => drop(this.call.take()),
            // An end without a status in trailers is not a complete gRPC
            // response either; the `Drop` of the call counts it.
            None => drop(this.call.take()),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value
        .to_str()
        .ok()
        .and_then(|code| code.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    Some(code)
}

/// The status code's canonical name, as in the gRPC spec's status codes.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_header_names_its_code() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
        assert_eq!(grpc_status(&headers), Some(Code::InvalidArgument));
        headers.insert("grpc-status", http::HeaderValue::from_static("x"));
        assert_eq!(grpc_status(&headers), Some(Code::Unknown));
        assert_eq!(code_label(Code::InvalidArgument), "INVALID_ARGUMENT");
    }
}
