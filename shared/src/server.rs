//! The gRPC server bootstrap every target uses: its own services plus
//! `grpc.health.v1` and server reflection (v1 and v1alpha, which grpcurl 1.8
//! asks for), behind the shared tower layers, with `/metrics` beside it, and
//! a graceful shutdown; over TLS when the process has a certificate.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::auth::Authenticator;
use crate::config::{CommonConfig, Target};
use crate::layers::{AuthLayer, MetricsLayer, TraceLayer};
use crate::tls::{TlsConfig, TlsError};

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_SERVICES: [&str; 2] = [
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("reflection descriptors: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("metrics server: {0}")]
    Metrics(std::io::Error),
}

/// The sockets a target serves on. Bound by the caller, so tests pass
/// `127.0.0.1:0` listeners and never race for ports.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    pub metrics: TcpListener,
    /// Alerting's status page (`--web-addr`), bound by the binary when it
    /// runs alerting with the page on; `None` everywhere else.
    pub web: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of the configuration.
    pub async fn bind(config: &CommonConfig) -> Result<Self, ServerError> {
        Ok(Self {
            grpc: bind(config.grpc_addr).await?,
            metrics: bind(config.metrics_addr).await?,
            web: None,
        })
    }

    /// Two free ports on 127.0.0.1.
    pub async fn local() -> Result<Self, ServerError> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(Self {
            grpc: bind(any).await?,
            metrics: bind(any).await?,
            web: None,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .expect("a bound listener has an address")
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// The limits and credentials the bootstrap applies.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub auth: Authenticator,
    /// Certificate and key: served over TLS (health and reflection too).
    /// The `/metrics` endpoint stays plain HTTP (docs/security.md).
    pub tls: TlsConfig,
    pub request_timeout: Duration,
    pub concurrency_limit: usize,
    pub shutdown_grace: Duration,
}

impl ServerOptions {
    pub fn from_config(config: &CommonConfig) -> Self {
        Self {
            auth: config.authenticator.clone(),
            tls: config.tls.clone(),
            request_timeout: config.server.request_timeout,
            concurrency_limit: config.server.concurrency_limit.max(1),
            shutdown_grace: config.server.shutdown_grace,
        }
    }
}

/// A target's gRPC server under construction.
pub struct GrpcServer {
    target: Target,
    options: ServerOptions,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    /// Cancelled when shutdown begins. Handlers of long-lived streams watch
    /// it (see [`GrpcServer::shutdown_token`]) and end their streams, since
    /// the server only finishes once every open call has.
    shutdown: CancellationToken,
}

impl GrpcServer {
    pub fn new(target: Target, options: ServerOptions) -> Self {
        Self {
            target,
            options,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Cancelled when the server starts shutting down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Mounts a generated `…Server<T>`; it is reported healthy and advertised
    /// by reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serves until `shutdown` completes, then drains: health turns
    /// NOT_SERVING, the listener closes, open calls get `shutdown_grace` to
    /// finish, and whatever is still open after that is cut.
    pub async fn serve(
        mut self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let grpc_addr = listeners.grpc_addr();
        let metrics_addr = listeners.metrics_addr();

        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &self.service_names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        let advertised: Vec<&'static str> = self
            .service_names
            .iter()
            .copied()
            .chain([HEALTH_SERVICE])
            .chain(REFLECTION_SERVICES)
            .collect();
        self.routes
            .add_service(health_service)
            .add_service(reflection(&advertised).build_v1()?)
            .add_service(reflection(&advertised).build_v1alpha()?);

        crate::metrics::handle();
        let methods = served_methods(&advertised);
        metrics::gauge!("netward_build_info", "target" => self.target.name(), "version" => env!("CARGO_PKG_VERSION"))
            .set(1.0);
        let metrics_server = tokio::spawn(crate::metrics::serve(
            listeners.metrics,
            self.shutdown.clone().cancelled_owned(),
        ));

        // Read before anything is served, so a bad file stops the start.
        let mut builder = tonic::transport::Server::builder();
        let tls = self.options.tls.server()?;
        let tls_enabled = tls.is_some();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let grpc_server = builder
            .tcp_nodelay(true)
            // Executors hold streams for days, often through NAT: keepalives
            // keep the mapping open and detect a dead peer.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .timeout(self.options.request_timeout)
            .layer(TraceLayer::new(self.target.name()))
            // Outside auth, so that rejected calls are counted too.
            .layer(MetricsLayer::new(
                methods.iter().map(|(s, m)| (s.as_str(), m.as_str())),
            ))
            .layer(AuthLayer::new(self.options.auth.clone()))
            .layer(GlobalConcurrencyLimitLayer::new(
                self.options.concurrency_limit,
            ))
            .add_routes(self.routes.routes())
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listeners.grpc),
                self.shutdown.clone().cancelled_owned(),
            );
        tokio::pin!(grpc_server);
        tracing::info!(
            target_name = self.target.name(),
            %grpc_addr,
            %metrics_addr,
            services = ?self.service_names,
            authenticated = self.options.auth.is_enabled(),
            tls = tls_enabled,
            client_certificates = tls_enabled && self.options.tls.require_client_cert,
            "serving"
        );

        let outcome = tokio::select! {
            outcome = &mut grpc_server => {
                // The server stopped by itself: stop the metrics side too.
                self.shutdown.cancel();
                outcome.map_err(ServerError::from)
            }
            () = shutdown => {
                tracing::info!(target_name = self.target.name(), "shutting down");
                // "" is the whole server's status, the one probes ask for.
                for name in self.service_names.iter().chain(&[""]) {
                    health.set_service_status(*name, ServingStatus::NotServing).await;
                }
                self.shutdown.cancel();
                match tokio::time::timeout(self.options.shutdown_grace, &mut grpc_server).await {
                    Ok(outcome) => outcome.map_err(ServerError::from),
                    Err(_) => {
                        tracing::warn!(
                            grace = ?self.options.shutdown_grace,
                            "open calls did not finish within the grace period; cutting them"
                        );
                        Ok(())
                    }
                }
            }
        };
        match metrics_server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(ServerError::Metrics(error)),
            Err(error) => tracing::error!(%error, "metrics server task failed"),
        }
        tracing::info!(target_name = self.target.name(), "stopped");
        outcome
    }
}

fn reflection(advertised: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    advertised.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, name| builder.with_service_name(*name),
    )
}

/// The `(service, method)` pairs of the advertised services, from the
/// descriptor sets compiled in: the gRPC metrics' label values.
fn served_methods(advertised: &[&'static str]) -> Vec<(String, String)> {
    use prost::Message;

    let sets = [
        crate::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = Vec::new();
    for set in sets {
        let set = prost_types::FileDescriptorSet::decode(set)
            .expect("a compiled-in descriptor set decodes");
        for file in set.file {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                if !advertised.contains(&name.as_str()) {
                    continue;
                }
                methods.extend(
                    service
                        .method
                        .iter()
                        .map(|method| (name.clone(), method.name().to_owned())),
                );
            }
        }
    }
    methods
}
