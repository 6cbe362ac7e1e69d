//! TLS of the gRPC servers and clients: rustls with the ring provider (the
//! choice is explained in docs/security.md, "TLS"). A process's own
//! certificate and key are its server identity and, when it dials a peer
//! over `https://`, its client certificate; the CA verifies peers both ways.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The `[tls]` section (`NETWARD_TLS__CERT`, `--tls-cert`…). Paths are read
/// when a server starts or a client dials, so a client picks up a renewed
/// certificate on its next connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain: the server's identity, and the client
    /// certificate sent to `https://` peers.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s): peers' server certificates are verified against
    /// it (instead of the system's roots), and so are client certificates
    /// when `require_client_cert` is set.
    pub ca: Option<PathBuf>,
    /// The server demands a client certificate signed by `ca` (mTLS): meant
    /// for the planner and alerting, which executors dial.
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: {present} is set but {missing} is not; give both or neither")]
    Incomplete {
        present: &'static str,
        missing: &'static str,
    },
    #[error(
        "tls: require_client_cert needs tls.ca (the CA client certificates are checked against)"
    )]
    NoClientCa,
    #[error("tls: require_client_cert needs tls.cert and tls.key (the server must speak TLS)")]
    NoServerIdentity,
    #[error("tls: cannot read {what} {path}: {reason}")]
    File {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl TlsConfig {
    /// True when the process has a certificate and key, i.e. serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Rejects half-configured settings, without reading the files.
    pub fn validate(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => {
                return Err(TlsError::Incomplete {
                    present: "tls.cert",
                    missing: "tls.key",
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete {
                    present: "tls.key",
                    missing: "tls.cert",
                });
            }
            _ => {}
        }
        if self.require_client_cert {
            if !self.enabled() {
                return Err(TlsError::NoServerIdentity);
            }
            if self.ca.is_none() {
                return Err(TlsError::NoClientCa);
            }
        }
        Ok(())
    }

    /// The server side: `None` without a certificate (plaintext).
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        self.validate()?;
        let Some(identity) = self.identity()? else {
            return Ok(None);
        };
        let mut config = ServerTlsConfig::new().identity(identity);
        if self.require_client_cert
            && let Some(ca) = self.ca_certificate()?
        {
            // With a client CA and `client_auth_optional(false)` (tonic's
            // default), a handshake without a valid client certificate fails.
            config = config.client_ca_root(ca);
        }
        Ok(Some(config))
    }

    /// The client side, for an `https://` peer: its certificate is verified
    /// against `ca`, or against the system's roots when no CA is configured;
    /// the own certificate, when configured, is offered as client identity.
    pub fn client(&self) -> Result<ClientTlsConfig, TlsError> {
        self.validate()?;
        let mut config = ClientTlsConfig::new();
        config = match self.ca_certificate()? {
            Some(ca) => config.ca_certificate(ca),
            None => config.with_native_roots(),
        };
        if let Some(identity) = self.identity()? {
            config = config.identity(identity);
        }
        Ok(config)
    }

    fn identity(&self) -> Result<Option<Identity>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        let cert_pem = read_certificates("certificate", cert)?;
        let key_pem = read("private key", key)?;
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|error| TlsError::File {
            what: "private key",
            path: key.clone(),
            reason: format!("no PEM private key: {error}"),
        })?;
        Ok(Some(Identity::from_pem(cert_pem, key_pem)))
    }

    fn ca_certificate(&self) -> Result<Option<Certificate>, TlsError> {
        self.ca
            .as_ref()
            .map(|ca| read_certificates("CA certificate", ca).map(Certificate::from_pem))
            .transpose()
    }
}

/// A PEM file holding at least one certificate, checked here so that a
/// wrong path or a key given as certificate is reported at startup with
/// the file's name rather than as a handshake failure later.
fn read_certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    let count = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::File {
            what,
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?
        .len();
    if count == 0 {
        return Err(TlsError::File {
            what,
            path: path.to_path_buf(),
            reason: "no PEM certificate in it".to_string(),
        });
    }
    Ok(pem)
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::File {
        what,
        path: path.to_path_buf(),
        reason: error.to_string(),
    })
}

/// Makes ring the process's rustls provider. Every TLS user (tonic, reqwest,
/// sqlx, redis) then takes the same one; reqwest's `rustls-no-provider`
/// needs it installed. Idempotent: later calls keep the first.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_an_identity_is_refused() {
        let cert_only = TlsConfig {
            cert: Some("/etc/netward/cert.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(
            cert_only.validate().unwrap_err().to_string(),
            "tls: tls.cert is set but tls.key is not; give both or neither"
        );
        let mtls_without_ca = TlsConfig {
            cert: Some("/c.pem".into()),
            key: Some("/k.pem".into()),
            require_client_cert: true,
            ..TlsConfig::default()
        };
        assert!(matches!(
            mtls_without_ca.validate(),
            Err(TlsError::NoClientCa)
        ));
        assert!(TlsConfig::default().server().unwrap().is_none());
    }

    #[test]
    fn unreadable_files_are_named() {
        let config = TlsConfig {
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
            ..TlsConfig::default()
        };
        let error = config.server().unwrap_err().to_string();
        assert!(
            error.starts_with("tls: cannot read certificate /nonexistent/cert.pem"),
            "{error}"
        );
    }
}
