//! Channels to peers, for services and the CLI alike: every call carries the
//! bearer token (when configured) and the caller's trace context; `https://`
//! peers are reached over TLS, `http://` ones in plaintext.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::config::CommonConfig;
use crate::secret::Secret;
use crate::tls::{TlsConfig, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid peer url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the token contains characters not allowed in a gRPC header")]
    InvalidToken,
    #[error("cannot set up TLS to {url}: {source}")]
    Tls { url: String, source: TlsError },
    #[error("invalid TLS settings for {url}: {source}")]
    Transport {
        url: String,
        source: tonic::transport::Error,
    },
}

/// How a process authenticates to its peers: the bearer token, and the TLS
/// settings used for `https://` URLs (the CA that verifies the peer, and the
/// process's own certificate as client identity).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub token: Option<Secret<String>>,
    pub tls: TlsConfig,
}

impl ClientOptions {
    /// The process's own peer token (`auth.peer_token`, else `token`) and
    /// TLS settings.
    pub fn from_config(config: &CommonConfig) -> Self {
        Self {
            token: config.peer_token().cloned(),
            tls: config.tls.clone(),
        }
    }
}

/// A channel with the netward interceptor; generated clients wrap it
/// (`InventoryServiceClient::new(channel)`).
pub type PeerChannel = InterceptedService<Channel, ClientInterceptor>;

/// A lazily connecting channel to `url` (`http://host:port`, or
/// `https://host:port` for TLS): the first call connects, and a lost
/// connection is re-established on the next call. The TLS files are read
/// here, so a renewed certificate is used from the next `connect` on.
pub fn connect(url: &str, options: &ClientOptions) -> Result<PeerChannel, ClientError> {
    Ok(InterceptedService::new(
        channel(url, options)?,
        ClientInterceptor::new(options.token.as_ref())?,
    ))
}

/// The lazily connecting channel of [`connect`] without its interceptor
/// (`options.token` unused): for a caller that sends each call with a token
/// of its own over one shared connection (alerting's status page forwards
/// each user's token).
pub fn channel(url: &str, options: &ClientOptions) -> Result<Channel, ClientError> {
    let mut endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|error| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: error.to_string(),
        })?;
    if endpoint.uri().scheme_str() == Some("https") {
        let tls = options.tls.client().map_err(|source| ClientError::Tls {
            url: url.to_string(),
            source,
        })?;
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source,
            })?;
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(channel)
}

/// Adds `authorization: Bearer …` and W3C `traceparent` to every call.
#[derive(Clone, Debug)]
pub struct ClientInterceptor {
    authorization: Option<Secret<MetadataValue<Ascii>>>,
}

impl ClientInterceptor {
    pub fn new(token: Option<&Secret<String>>) -> Result<Self, ClientError> {
        let authorization = token
            .filter(|token| !token.expose().is_empty())
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {}", token.expose()))
                    .map(|mut value| {
                        value.set_sensitive(true);
                        Secret::new(value)
                    })
                    .map_err(|_| ClientError::InvalidToken)
            })
            .transpose()?;
        Ok(Self { authorization })
    }
}

impl Interceptor for ClientInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", authorization.expose().clone());
        }
        crate::trace_context::inject_metadata(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn https_needs_readable_tls_files_and_http_ignores_them() {
        let options = ClientOptions {
            token: None,
            tls: TlsConfig {
                ca: Some("/nonexistent/ca.pem".into()),
                ..TlsConfig::default()
            },
        };
        let error = connect("https://127.0.0.1:1", &options).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read CA certificate /nonexistent/ca.pem"),
            "{error}"
        );
        assert!(connect("http://127.0.0.1:1", &options).is_ok());
        // No CA: the system's roots verify the peer.
        assert!(connect("https://127.0.0.1:1", &ClientOptions::default()).is_ok());
    }
}
