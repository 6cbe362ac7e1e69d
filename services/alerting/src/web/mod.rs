//! Alerting's live status page (`--web-addr`, default 127.0.0.1:8080): the
//! static page embedded in the binary, a small JSON API and a server-sent
//! event stream. Every handler is a gRPC client of alerting itself (over
//! loopback) and of the planners, carrying the user's own token, so the auth
//! layer's roles and region/site scopes apply to the page exactly as to any
//! other client. `api.rs` holds the JSON handlers, `sse.rs` the event stream.

mod api;
mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use netward_shared::auth::{Authenticator, Caller};
use netward_shared::client::{ClientError, ClientInterceptor, ClientOptions, PeerChannel};
use netward_shared::config::LoadedConfig;
use netward_shared::proto::v1::alerting_service_client::AlertingServiceClient;
use netward_shared::proto::v1::planner_service_client::PlannerServiceClient;
use netward_shared::secret::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The default address of the page.
pub const DEFAULT_WEB_ADDR: &str = "127.0.0.1:8080";

/// The cookie that keeps a user's token (HttpOnly, SameSite=Strict).
const TOKEN_COOKIE: &str = "netward_token";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "invalid status page address {value:?} (--web-addr, NETWARD_ALERTING__WEB_ADDR or \
         [alerting] web_addr): expected host:port, or off"
    )]
    Invalid { value: String },
    #[error(
        "refusing to serve the status page on {addr}: it is not a loopback address and the \
         page is plain HTTP, so tokens would cross the network in clear text; listen on \
         127.0.0.1 behind a TLS reverse proxy, or pass --insecure (NETWARD_INSECURE=true) \
         to accept the risk"
    )]
    Exposed { addr: SocketAddr },
    #[error(
        "cannot listen on {addr} for the status page (--web-addr or \
         NETWARD_ALERTING__WEB_ADDR; --web-addr off turns the page off): {source}"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The page's address from `[alerting] web_addr`: `None` when it is `off`.
pub fn web_addr(value: &str) -> Result<Option<SocketAddr>, WebError> {
    match value.trim() {
        "off" | "" => Ok(None),
        addr => addr.parse().map(Some).map_err(|_| WebError::Invalid {
            value: value.to_string(),
        }),
    }
}

/// Binds the page's address of `config` (before anything starts, so a
/// clash stops the process at once); `None` when the page is off. Beyond
/// loopback only with `insecure`: the page is plain HTTP.
pub async fn bind(config: &LoadedConfig) -> Result<Option<TcpListener>, crate::Error> {
    let section: crate::AlertingConfig = config.section()?;
    let Some(addr) = web_addr(&section.web_addr)? else {
        return Ok(None);
    };
    if !addr.ip().is_loopback() && !config.common.insecure {
        return Err(WebError::Exposed { addr }.into());
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Bind { addr, source })?;
    Ok(Some(listener))
}

/// What the handlers share: channels to alerting itself and to the
/// planners (one connection each, every call with the user's token), and
/// the tokens, to name the user who logs in.
pub struct Web {
    alerting: Channel,
    /// (url, channel) of each planner `planner_url` lists.
    planners: Vec<(String, Channel)>,
    auth: Authenticator,
    /// Ends the event streams when alerting shuts down.
    stop: CancellationToken,
}

impl Web {
    /// Channels to alerting's own gRPC listener at `grpc_addr` and to the
    /// planners of `config`.
    pub fn new(
        config: &LoadedConfig,
        grpc_addr: SocketAddr,
        stop: CancellationToken,
    ) -> Result<Self, ClientError> {
        let options = ClientOptions::from_config(&config.common);
        // Over TLS the certificate names the configured URL's host; in clear
        // text, loopback reaches the listener whatever address it is bound to.
        let own = if config.common.tls.enabled() {
            config.common.alerting_url.clone()
        } else {
            let mut addr = grpc_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}")
        };
        let planners = config
            .common
            .planner_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                Ok((
                    url.to_string(),
                    netward_shared::client::channel(url, &options)?,
                ))
            })
            .collect::<Result<_, ClientError>>()?;
        Ok(Self {
            alerting: netward_shared::client::channel(&own, &options)?,
            planners,
            auth: config.common.authenticator.clone(),
            stop,
        })
    }

    fn alerting(&self, user: &User) -> Result<AlertingServiceClient<PeerChannel>, ApiError> {
        Ok(AlertingServiceClient::new(InterceptedService::new(
            self.alerting.clone(),
            user.interceptor()?,
        )))
    }

    fn planners(
        &self,
        user: &User,
    ) -> Result<Vec<(String, PlannerServiceClient<PeerChannel>)>, ApiError> {
        self.planners
            .iter()
            .map(|(url, channel)| {
                let client = PlannerServiceClient::new(InterceptedService::new(
                    channel.clone(),
                    user.interceptor()?,
                ));
                Ok((url.clone(), client))
            })
            .collect()
    }
}

/// The token a request carries: the login cookie, or an `Authorization:
/// Bearer` header (scripts, tests).
#[derive(Clone, Default)]
pub struct User {
    token: Option<Secret<String>>,
}

impl User {
    fn of(headers: &HeaderMap) -> User {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == TOKEN_COOKIE)
            .map(|(_, value)| value.to_string());
        User {
            token: bearer.or(cookie).filter(|t| !t.is_empty()).map(Secret::new),
        }
    }

    fn interceptor(&self) -> Result<ClientInterceptor, ApiError> {
        ClientInterceptor::new(self.token.as_ref()).map_err(|_| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: "the token contains characters not allowed in a header".into(),
        })
    }

    /// Who the token names, when tokens are configured and it is one of them.
    fn caller(&self, auth: &Authenticator) -> Option<Caller> {
        let token = self.token.as_ref()?;
        auth.identify(token.expose().as_bytes()).cloned()
    }
}

/// An error of the JSON API: an HTTP status and a message the page shows.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// A gRPC status as the page's error: the code decides the HTTP status,
/// the message is the service's own.
impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        use tonic::Code;
        let (http, what) = match status.code() {
            Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "not logged in"),
            Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission denied"),
            Code::NotFound => (StatusCode::NOT_FOUND, "not found"),
            Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid request"),
            Code::FailedPrecondition => (StatusCode::CONFLICT, "not possible now"),
            Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            _ => (StatusCode::BAD_GATEWAY, "failed"),
        };
        Self {
            status: http,
            message: format!("{what}: {}", status.message()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        json_response(self.status, &body)
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Headers on every response: nothing runs but the page's own script, the
/// page is never framed, types are never sniffed, API answers never cached.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/api/session", get(api::session))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/summary", get(api::summary))
        .route("/api/sites/{site_id}/devices", get(api::site_devices))
        .route("/api/devices/{device_id}/history", get(api::history))
        .route("/api/alerts", get(api::alerts))
        .route("/api/alerts/{alert_id}/ack", post(api::ack))
        .route("/api/cycles", get(api::cycles))
        .route("/api/events", get(sse::events))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(web)
}

/// Serves the page on `listener` until `shutdown` completes; the event
/// streams end with `web.stop`, so the graceful shutdown does not wait on
/// them.
pub async fn serve(
    listener: TcpListener,
    web: Web,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(Arc::new(web)))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_address_is_an_address_or_off() {
        assert_eq!(
            web_addr(DEFAULT_WEB_ADDR).unwrap(),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(web_addr("off").unwrap(), None);
        let error = web_addr("localhost").unwrap_err().to_string();
        assert!(error.contains("\"localhost\""), "{error}");
        assert!(error.contains("--web-addr"), "{error}");
    }

    #[test]
    fn a_token_comes_from_the_bearer_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; netward_token=from-cookie"),
        );
        let token = |h: &HeaderMap| User::of(h).token.map(|t| t.expose().clone());
        assert_eq!(token(&headers).as_deref(), Some("from-cookie"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        assert_eq!(token(&headers).as_deref(), Some("from-header"));
        assert_eq!(token(&HeaderMap::new()), None);
    }
}
