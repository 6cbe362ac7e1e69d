//! Who is calling, and what they may do: tokens with a role and an optional
//! region/site scope, recognised by their SHA-256 (the configuration never
//! holds a token itself), and the class of every RPC ([`policy`]).
//!
//! ```toml
//! [[auth.tokens]]
//! name = "emea-noc"
//! role = "operator"
//! regions = ["EMEA"]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! The single `token` of earlier releases keeps working as an admin token.
//! Without any token every call is let through as [`Caller::anonymous`].

pub mod grant;
pub mod policy;

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub use policy::RpcClass;

/// What a token may do; see [`policy::allowed`] for the RPC classes of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Acknowledgements, silences, rules, inventory and credential writes,
    /// probe-now; and every read.
    Operator,
    /// Reads only.
    Viewer,
    /// A ping executor or SNMP poller: `Work` and `Ingest` only, results only
    /// for the batches the planner granted it.
    Executor,
    /// What services call on each other: reads and `ResolveCredential`.
    Service,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Viewer,
        Role::Executor,
        Role::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Executor => "executor",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == name)
            .ok_or_else(|| {
                format!("unknown role {name:?} (admin, operator, viewer, executor or service)")
            })
    }
}

/// One accepted token, as configured (`[[auth.tokens]]`).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenConfig {
    /// Who holds it: the name audit events and logs show.
    pub name: String,
    pub role: Role,
    /// Regions the holder may see and act on; empty: all.
    #[serde(default)]
    pub regions: Vec<String>,
    /// Sites (id, name or code) the holder may see and act on; empty: all.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Lower-case hex SHA-256 of the token (`netward token create` prints it).
    pub sha256: String,
}

/// The `[auth]` section every target shares.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The token this process sends to its peers; default: `token`.
    #[serde(default)]
    pub peer_token: Option<Secret<String>>,
    /// Key of the batch grants (hex, at least 32 bytes): the planner signs
    /// each assignment with it, alerting verifies an executor's results
    /// against it. Needed by both when executor tokens are in use.
    #[serde(default)]
    pub grant_key: Option<Secret<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error("auth.tokens[{index}] ({name:?}): sha256 must be 64 hex digits")]
    BadDigest { index: usize, name: String },
    #[error("auth.tokens[{index}]: a token needs a name")]
    NoName { index: usize },
    #[error("auth.tokens: {name:?} is configured twice")]
    DuplicateName { name: String },
    #[error("auth.tokens: {first:?} and {second:?} have the same sha256")]
    DuplicateDigest { first: String, second: String },
    #[error(
        "auth.tokens[{index}] ({name:?}): only operator and viewer tokens take regions or sites"
    )]
    ScopeOnRole { index: usize, name: String },
    #[error("auth.grant_key must be at least 32 bytes of hex (64 digits)")]
    BadGrantKey,
}

/// The authenticated caller of a request, put into its extensions by the
/// auth layer (`request.extensions().get::<Caller>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; `anonymous` without authentication, `token` for
    /// the single admin token.
    pub name: String,
    pub role: Role,
    pub scope: Scope,
}

impl Caller {
    /// The caller of a server without tokens: may do everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".into(),
            role: Role::Admin,
            scope: Scope::default(),
        }
    }

    /// The caller of a request: the one the auth layer found, anonymous
    /// when the server has no auth layer (in-process tests).
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(Caller::anonymous)
    }
}

/// Regions and sites a caller is limited to; empty lists: everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub regions: Vec<String>,
    pub sites: Vec<String>,
}

impl Scope {
    pub fn is_unlimited(&self) -> bool {
        self.regions.is_empty() && self.sites.is_empty()
    }

    /// Whether a device of `region` at the site known by any of `site_keys`
    /// (id, name, code) is in scope: its region is listed, or its site is.
    pub fn allows(&self, region: &str, site_keys: &[&str]) -> bool {
        self.is_unlimited()
            || self.regions.iter().any(|r| r.eq_ignore_ascii_case(region))
            || self
                .sites
                .iter()
                .any(|s| site_keys.iter().any(|key| !key.is_empty() && s == key))
    }
}

/// `regions EMEA, APAC; sites NYC-01`, or `everything`: for messages.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.regions.is_empty() {
            parts.push(format!("regions {}", self.regions.join(", ")));
        }
        if !self.sites.is_empty() {
            parts.push(format!("sites {}", self.sites.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("everything")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// Recognises presented tokens. Built once per server from the config.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// (digest, caller) of every accepted token.
    tokens: Vec<([u8; 32], Caller)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "tokens",
                &self.tokens.iter().map(|(_, c)| &c.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Authenticator {
    /// From the single admin `token` and the `[[auth.tokens]]`.
    pub fn new(
        admin_token: Option<&Secret<String>>,
        config: &AuthConfig,
    ) -> Result<Self, AuthConfigError> {
        let mut tokens = Vec::new();
        if let Some(token) = admin_token.filter(|t| !t.expose().is_empty()) {
            tokens.push((
                digest(token.expose()),
                Caller {
                    name: "token".into(),
                    role: Role::Admin,
                    scope: Scope::default(),
                },
            ));
        }
        for (index, token) in config.tokens.iter().enumerate() {
            if token.name.trim().is_empty() {
                return Err(AuthConfigError::NoName { index });
            }
            let bytes = hex::decode(token.sha256.trim())
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| AuthConfigError::BadDigest {
                    index,
                    name: token.name.clone(),
                })?;
            let scoped = !token.regions.is_empty() || !token.sites.is_empty();
            if scoped && !matches!(token.role, Role::Operator | Role::Viewer) {
                return Err(AuthConfigError::ScopeOnRole {
                    index,
                    name: token.name.clone(),
                });
            }
            if let Some((_, other)) = tokens.iter().find(|(_, c)| c.name == token.name) {
                return Err(AuthConfigError::DuplicateName {
                    name: other.name.clone(),
                });
            }
            if let Some((_, other)) = tokens.iter().find(|(d, _)| *d == bytes) {
                return Err(AuthConfigError::DuplicateDigest {
                    first: other.name.clone(),
                    second: token.name.clone(),
                });
            }
            tokens.push((
                bytes,
                Caller {
                    name: token.name.clone(),
                    role: token.role,
                    scope: Scope {
                        regions: token.regions.clone(),
                        sites: token.sites.clone(),
                    },
                },
            ));
        }
        if let Some(key) = &config.grant_key {
            grant::GrantKey::parse(key).map_err(|_| AuthConfigError::BadGrantKey)?;
        }
        Ok(Self { tokens })
    }

    /// Whether any token is configured (else every call is anonymous).
    pub fn is_enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The caller presenting `token`, or `None` for an unknown token.
    /// Every configured digest is compared, each without an early exit, so
    /// timing tells nothing about which token (or how much of one) matched.
    pub fn identify(&self, token: &[u8]) -> Option<&Caller> {
        let presented = digest_bytes(token);
        let mut found = None;
        for (digest, caller) in &self.tokens {
            if constant_time_eq(digest, &presented) && found.is_none() {
                found = Some(caller);
            }
        }
        found
    }
}

/// The lower-case hex SHA-256 of a token, as `[[auth.tokens]]` holds it.
pub fn token_sha256(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    digest_bytes(token.as_bytes())
}

fn digest_bytes(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Compares without an early exit.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, secret: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            role,
            regions: Vec::new(),
            sites: Vec::new(),
            sha256: token_sha256(secret),
        }
    }

    #[test]
    fn tokens_are_recognised_by_their_digest() {
        let config = AuthConfig {
            tokens: vec![
                token("noc", Role::Operator, "op-secret"),
                token("exec-1", Role::Executor, "exec-secret"),
            ],
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(Some(&Secret::new("admin".into())), &config).unwrap();
        assert_eq!(auth.identify(b"admin").unwrap().role, Role::Admin);
        assert_eq!(auth.identify(b"admin").unwrap().name, "token");
        assert_eq!(auth.identify(b"op-secret").unwrap().name, "noc");
        assert_eq!(auth.identify(b"exec-secret").unwrap().role, Role::Executor);
        assert!(auth.identify(b"op-secre").is_none());
        assert!(auth.identify(b"").is_none());
    }

    #[test]
    fn bad_token_configs_are_refused_with_the_reason() {
        let bad_digest = TokenConfig {
            sha256: "abc".into(),
            ..token("x", Role::Viewer, "")
        };
        let scoped_executor = TokenConfig {
            regions: vec!["EMEA".into()],
            ..token("e", Role::Executor, "e")
        };
        for (tokens, error) in [
            (
                vec![bad_digest],
                AuthConfigError::BadDigest {
                    index: 0,
                    name: "x".into(),
                },
            ),
            (
                vec![token("a", Role::Viewer, "1"), token("a", Role::Viewer, "2")],
                AuthConfigError::DuplicateName { name: "a".into() },
            ),
            (
                vec![token("a", Role::Viewer, "1"), token("b", Role::Viewer, "1")],
                AuthConfigError::DuplicateDigest {
                    first: "a".into(),
                    second: "b".into(),
                },
            ),
            (
                vec![scoped_executor],
                AuthConfigError::ScopeOnRole {
                    index: 0,
                    name: "e".into(),
                },
            ),
        ] {
            let config = AuthConfig {
                tokens,
                ..AuthConfig::default()
            };
            assert_eq!(Authenticator::new(None, &config).unwrap_err(), error);
        }
    }

    #[test]
    fn a_scope_allows_its_regions_and_sites() {
        let scope = Scope {
            regions: vec!["EMEA".into()],
            sites: vec!["NYC-01".into()],
        };
        assert!(scope.allows("emea", &["s1", "Paris", "PAR-01"]));
        assert!(scope.allows("AMER", &["s2", "New York", "NYC-01"]));
        assert!(!scope.allows("AMER", &["s3", "Boston", "BOS-01"]));
        assert!(Scope::default().allows("anything", &[]));
    }
}
