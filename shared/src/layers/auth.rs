//! Authentication and authorisation of every call: the bearer token names
//! a [`Caller`] (put into the request's extensions for the handlers), and
//! the caller's role must allow the method's class ([`policy`]). Health
//! stays open: load balancers and orchestrators probe it without
//! credentials.

use std::task::{Context, Poll};

use futures::future::{self, Either, Ready};
use tower::{Layer, Service};

use crate::auth::policy::{self, RpcClass};
use crate::auth::{Authenticator, Caller};

/// Requires a known bearer token whose role allows the method, when any
/// token is configured; without tokens every call is anonymous.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Authenticator,
}

impl AuthLayer {
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    auth: Authenticator,
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

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let class = policy::class_of(path);
        if class == Some(RpcClass::Open) {
            return Either::Left(self.inner.call(request));
        }
        if !self.auth.is_enabled() {
            request.extensions_mut().insert(Caller::anonymous());
            return Either::Left(self.inner.call(request));
        }
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b""));
        let caller = match presented {
            None => {
                tracing::debug!(path, "call rejected: no bearer token");
                return reject(tonic::Status::unauthenticated(
                    "missing bearer token (metadata `authorization: Bearer <token>`)",
                ));
            }
            Some(token) => match self.auth.identify(token) {
                Some(caller) => caller.clone(),
                None => {
                    tracing::warn!(path, "call rejected: unknown bearer token");
                    return reject(tonic::Status::unauthenticated("invalid bearer token"));
                }
            },
        };
        let permitted = match class {
            Some(class) => policy::allowed(caller.role, class),
            // A method the policy does not know: admins only.
            None => caller.role == crate::auth::Role::Admin,
        };
        if !permitted {
            tracing::warn!(
                path,
                caller = %caller.name,
                role = %caller.role,
                "call refused: the role does not allow it"
            );
            return reject(tonic::Status::permission_denied(format!(
                "token {:?} has role {}, which may not call {path}{}",
                caller.name,
                caller.role,
                class.map_or(String::new(), |class| format!(" (a {class:?} call)")),
            )));
        }
        request.extensions_mut().insert(caller);
        Either::Left(self.inner.call(request))
    }
}

fn reject<F, B: Default, E>(
    status: tonic::Status,
) -> Either<F, Ready<Result<http::Response<B>, E>>> {
    Either::Right(future::ready(Ok(status.into_http())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthConfig, Role, TokenConfig};
    use crate::secret::Secret;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn call(layer: &AuthLayer, path: &str, auth: Option<&str>) -> Option<String> {
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let caller = req.extensions().get::<Caller>().map(|c| c.name.clone());
            Ok::<_, Infallible>(http::Response::new(format!("passed as {caller:?}")))
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
                assert!(response.body().starts_with("passed") || path.contains("Health"));
                None
            }
        }
    }

    #[tokio::test]
    async fn token_is_required_except_for_health() {
        let layer = admin_only("s3cret");
        let unauthenticated = Some("16".to_string());
        let path = "/netward.v1.AlertingService/ListAlerts";
        assert_eq!(call(&layer, path, None).await, unauthenticated);
        assert_eq!(
            call(&layer, path, Some("Bearer wrong")).await,
            unauthenticated
        );
        assert_eq!(
            call(&layer, path, Some("Bearer s3cre")).await,
            unauthenticated
        );
        assert_eq!(call(&layer, path, Some("s3cret")).await, unauthenticated);
        assert_eq!(call(&layer, path, Some("Bearer s3cret")).await, None);
        assert_eq!(
            call(&layer, "/netward.v1.X/Unknown", Some("Bearer s3cret")).await,
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
            let layer =
                AuthLayer::new(Authenticator::new(token.as_ref(), &AuthConfig::default()).unwrap());
            assert_eq!(call(&layer, "/netward.v1.X/Y", None).await, None);
        }
    }

    fn admin_only(token: &str) -> AuthLayer {
        AuthLayer::new(
            Authenticator::new(Some(&Secret::new(token.into())), &AuthConfig::default()).unwrap(),
        )
    }

    #[tokio::test]
    async fn roles_get_permission_denied_outside_their_classes() {
        let tokens = [
            ("v", Role::Viewer),
            ("o", Role::Operator),
            ("e", Role::Executor),
            ("s", Role::Service),
        ];
        let config = AuthConfig {
            tokens: tokens
                .iter()
                .map(|(secret, role)| TokenConfig {
                    name: format!("{role}-token"),
                    role: *role,
                    regions: Vec::new(),
                    sites: Vec::new(),
                    sha256: crate::auth::token_sha256(secret),
                })
                .collect(),
            ..AuthConfig::default()
        };
        let layer = AuthLayer::new(Authenticator::new(None, &config).unwrap());
        let denied = Some("7".to_string());
        let ack = "/netward.v1.AlertingService/AckAlert";
        let list = "/netward.v1.AlertingService/ListAlerts";
        let ingest = "/netward.v1.AlertingService/Ingest";
        let resolve = "/netward.v1.InventoryService/ResolveCredential";
        assert_eq!(call(&layer, ack, Some("Bearer v")).await, denied);
        assert_eq!(call(&layer, list, Some("Bearer v")).await, None);
        assert_eq!(call(&layer, ack, Some("Bearer o")).await, None);
        assert_eq!(call(&layer, resolve, Some("Bearer o")).await, denied);
        assert_eq!(call(&layer, ingest, Some("Bearer e")).await, None);
        assert_eq!(call(&layer, resolve, Some("Bearer e")).await, denied);
        assert_eq!(call(&layer, list, Some("Bearer e")).await, denied);
        assert_eq!(call(&layer, resolve, Some("Bearer s")).await, None);
        assert_eq!(
            call(&layer, "/netward.v1.X/Unknown", Some("Bearer s")).await,
            denied
        );
    }
}
