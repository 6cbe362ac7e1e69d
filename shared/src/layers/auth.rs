//! Bearer-token authentication for every call but health checks: load
//! balancers and orchestrators probe health without credentials.

use std::task::{Context, Poll};

use futures::future::{self, Either, Ready};
use tower::{Layer, Service};

use crate::secret::Secret;

/// Paths that stay open when a token is configured.
const OPEN_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// Requires `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    token: Option<Secret<String>>,
}

impl AuthLayer {
    pub fn new(token: Option<Secret<String>>) -> Self {
        Self {
            token: token.filter(|t| !t.expose().is_empty()),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            expected: self
                .token
                .as_ref()
                .map(|t| Secret::new(format!("Bearer {}", t.expose()).into_bytes())),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    /// The whole expected header value, precomputed once.
    expected: Option<Secret<Vec<u8>>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for AuthService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(expected) = &self.expected else {
            return Either::Left(self.inner.call(request));
        };
        let path = request.uri().path();
        if OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
            return Either::Left(self.inner.call(request));
        }
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        match presented {
            Some(value) if constant_time_eq(value, expected.expose()) => {
                Either::Left(self.inner.call(request))
            }
            Some(_) => {
                tracing::warn!(path, "call rejected: wrong bearer token");
                Either::Right(future::ready(Ok(reject("invalid bearer token"))))
            }
            None => {
                tracing::debug!(path, "call rejected: no bearer token");
                Either::Right(future::ready(Ok(reject(
                    "missing bearer token (metadata `authorization: Bearer <token>`)",
                ))))
            }
        }
    }
}

fn reject<B: Default>(message: &str) -> http::Response<B> {
    tonic::Status::unauthenticated(message).into_http()
}

/// Compares without an early exit, so timing does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn call(layer: &AuthLayer, path: &str, auth: Option<&str>) -> Option<String> {
        let inner = tower::service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::from("passed")))
        });
        let mut request = http::Request::builder().uri(path);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = layer
            .layer(inner)
            .oneshot(request.body(()).unwrap())
            .await
            .unwrap();
        match response.headers().get("grpc-status") {
            Some(code) => Some(code.to_str().unwrap().to_string()),
            None => {
                assert_eq!(response.body(), "passed");
                None
            }
        }
    }

    #[tokio::test]
    async fn token_is_required_except_for_health() {
        let layer = AuthLayer::new(Some(Secret::new("s3cret".into())));
        let unauthenticated = Some("16".to_string());
        assert_eq!(call(&layer, "/netward.v1.X/Y", None).await, unauthenticated);
        assert_eq!(
            call(&layer, "/netward.v1.X/Y", Some("Bearer wrong")).await,
            unauthenticated
        );
        assert_eq!(
            call(&layer, "/netward.v1.X/Y", Some("Bearer s3cre")).await,
            unauthenticated
        );
        assert_eq!(
            call(&layer, "/netward.v1.X/Y", Some("Bearer s3cret")).await,
            None
        );
        assert_eq!(
            call(&layer, "/grpc.health.v1.Health/Check", None).await,
            None
        );
    }

    #[tokio::test]
    async fn no_token_configured_lets_everything_through() {
        for token in [None, Some(Secret::new(String::new()))] {
            let layer = AuthLayer::new(token);
            assert_eq!(call(&layer, "/netward.v1.X/Y", None).await, None);
        }
    }
}
