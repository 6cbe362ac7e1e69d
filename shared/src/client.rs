//! Channels to peers, for services and the CLI alike: every call carries the
//! bearer token (when configured) and the caller's trace context.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid peer url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("the token contains characters not allowed in a gRPC header")]
    InvalidToken,
}

/// A channel with the netward interceptor; generated clients wrap it
/// (`InventoryServiceClient::new(channel)`).
pub type PeerChannel = InterceptedService<Channel, ClientInterceptor>;

/// A lazily connecting channel to `url` (`http://host:port`): the first call
/// connects, and a lost connection is re-established on the next call.
pub fn connect(url: &str, token: Option<&Secret<String>>) -> Result<PeerChannel, ClientError> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|error| ClientError::InvalidUrl {
            url: url.to_string(),
            reason: error.to_string(),
        })?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(InterceptedService::new(
        channel,
        ClientInterceptor::new(token)?,
    ))
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
