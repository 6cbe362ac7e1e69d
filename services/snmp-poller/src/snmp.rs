//! The poller's own view of SNMP: OIDs, values, errors that map one-to-one
//! onto `SnmpOutcome`, and the [`Session`] trait the polling logic is
//! written against. async-snmp (pinned, its API changes often) appears only
//! in this file: [`SnmpEngine`] builds sessions on one shared UDP socket per
//! address family, with one engine cache for SNMPv3 engine ids and times.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use async_snmp as lib;
use netward_shared::proto::v1;

/// An object identifier. Ordering is SNMP's lexicographic order (a prefix
/// sorts before its extensions), which the walks rely on.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid(Vec<u32>);

impl Oid {
    pub fn new(arcs: Vec<u32>) -> Self {
        Self(arcs)
    }

    /// Parses dotted numeric text; a leading dot is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim().trim_start_matches('.');
        if trimmed.is_empty() {
            return Err("empty OID".into());
        }
        let arcs = trimmed
            .split('.')
            .map(|arc| {
                arc.parse::<u32>()
                    .map_err(|_| format!("{text:?} is not a dotted numeric OID"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if arcs.len() < 2 || arcs.len() > 128 {
            return Err(format!("{text:?} must have 2 to 128 arcs"));
        }
        Ok(Self(arcs))
    }

    pub fn arcs(&self) -> &[u32] {
        &self.0
    }

    pub fn starts_with(&self, prefix: &Oid) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The arcs after `prefix`, when this OID lies strictly under it.
    pub fn suffix_after(&self, prefix: &Oid) -> Option<&[u32]> {
        self.0
            .strip_prefix(prefix.0.as_slice())
            .filter(|rest| !rest.is_empty())
    }

    pub fn child(&self, arc: u32) -> Oid {
        let mut arcs = self.0.clone();
        arcs.push(arc);
        Oid(arcs)
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, arc) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{arc}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({self})")
    }
}

/// Renders instance arcs the way `ScalarValue.instance` carries them.
pub fn dotted(arcs: &[u32]) -> String {
    Oid(arcs.to_vec()).to_string()
}

/// An SNMP value as an agent returned it (exceptions included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    ObjectId(Oid),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    TimeTicks(u32),
    Counter64(u64),
    Opaque(Vec<u8>),
    Null,
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

impl Value {
    /// Any unsigned number (counters, gauges, ticks, non-negative integers).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Integer(v) => u64::try_from(v).ok(),
            Value::Counter32(v) | Value::Gauge32(v) | Value::TimeTicks(v) => Some(u64::from(v)),
            Value::Counter64(v) => Some(v),
            _ => None,
        }
    }

    /// An OCTET STRING as text: lossy UTF-8, trailing NULs (some agents pad
    /// DisplayStrings with them) removed.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::OctetString(bytes) => Some(
                String::from_utf8_lossy(bytes)
                    .trim_end_matches('\0')
                    .to_string(),
            ),
            _ => None,
        }
    }

    pub fn is_exception(&self) -> bool {
        matches!(
            self,
            Value::NoSuchObject | Value::NoSuchInstance | Value::EndOfMibView
        )
    }
}

/// One variable binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarBind {
    pub oid: Oid,
    pub value: Value,
}

/// SNMP version spoken to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2c,
    V3,
}

/// Agent error-status values the poller reacts to; the rest are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    TooBig,
    /// SNMPv1's answer for a missing object (v2c/v3 use exceptions instead).
    NoSuchName,
    Other(i32),
}

impl fmt::Display for AgentStatus {
    /// RFC 3416's names, as net-snmp's tools print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 19] = [
            "noError",
            "tooBig",
            "noSuchName",
            "badValue",
            "readOnly",
            "genErr",
            "noAccess",
            "wrongType",
            "wrongLength",
            "wrongEncoding",
            "wrongValue",
            "noCreation",
            "inconsistentValue",
            "resourceUnavailable",
            "commitFailed",
            "undoFailed",
            "authorizationError",
            "notWritable",
            "inconsistentName",
        ];
        match *self {
            AgentStatus::TooBig => f.write_str("tooBig"),
            AgentStatus::NoSuchName => f.write_str("noSuchName"),
            AgentStatus::Other(code) => match usize::try_from(code).ok().and_then(|i| NAMES.get(i))
            {
                Some(name) => f.write_str(name),
                None => write!(f, "error-status {code}"),
            },
        }
    }
}

/// Why an SNMP exchange failed. Each maps to exactly one `SnmpOutcome`; the
/// messages name no secret (no community, key or user name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnmpError {
    #[error("no answer within {timeout_ms} ms ({attempts} attempts)")]
    Timeout { timeout_ms: u64, attempts: u32 },
    #[error("authentication failed (usmStatsWrongDigests): wrong authentication key or protocol")]
    AuthFailure,
    #[error("the agent does not know this SNMPv3 user (usmStatsUnknownUserNames)")]
    UnknownUser,
    #[error(
        "the agent could not decrypt the request (usmStatsDecryptionErrors): wrong privacy key or protocol"
    )]
    DecryptionError,
    #[error("the reply could not be decrypted: wrong privacy key or protocol")]
    UndecryptableReply,
    #[error(
        "the agent answers this user without privacy but never answered its encrypted requests: wrong privacy key or protocol"
    )]
    EncryptedRequestsDropped,
    #[error(
        "the agent does not support this security level or these protocols for the user (usmStatsUnsupportedSecLevels)"
    )]
    UnsupportedSecurityLevel,
    #[error(
        "the agent kept rejecting the engine time (usmStatsNotInTimeWindows) after resynchronisation"
    )]
    NotInTimeWindow,
    #[error("the agent answered {status} at index {index}")]
    Agent { status: AgentStatus, index: u32 },
    #[error("invalid reply: {0}")]
    Protocol(String),
    #[error("could not send: {0}")]
    Send(String),
    #[error("unusable target: {0}")]
    Config(String),
}

impl SnmpError {
    pub fn outcome(&self) -> v1::SnmpOutcome {
        use v1::SnmpOutcome as O;
        match self {
            SnmpError::Timeout { .. } => O::Timeout,
            SnmpError::AuthFailure => O::AuthFailure,
            SnmpError::UnknownUser => O::UnknownUser,
            SnmpError::DecryptionError
            | SnmpError::UndecryptableReply
            | SnmpError::EncryptedRequestsDropped => O::DecryptionError,
            SnmpError::UnsupportedSecurityLevel => O::UnsupportedSecurityLevel,
            SnmpError::NotInTimeWindow => O::NotInTimeWindow,
            SnmpError::Agent { .. } => O::AgentError,
            SnmpError::Protocol(_) => O::ProtocolError,
            SnmpError::Send(_) => O::SendError,
            SnmpError::Config(_) => O::ConfigError,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, SnmpError::Timeout { .. })
    }

    pub fn is_too_big(&self) -> bool {
        matches!(
            self,
            SnmpError::Agent {
                status: AgentStatus::TooBig,
                ..
            }
        )
    }

    /// True when the failure says something about the credential or the
    /// agent's security configuration: no point sending more requests.
    pub fn is_security(&self) -> bool {
        matches!(
            self.outcome(),
            v1::SnmpOutcome::AuthFailure
                | v1::SnmpOutcome::UnknownUser
                | v1::SnmpOutcome::DecryptionError
                | v1::SnmpOutcome::UnsupportedSecurityLevel
                | v1::SnmpOutcome::NotInTimeWindow
        )
    }
}

/// One agent, reached with one credential. The polling logic (`poll.rs`)
/// sees only this, so it can be tested without a network; [`AgentSession`]
/// is the real implementation. Every method sends one logical request
/// (retransmissions after a timeout included, per the retry policy).
pub trait Session: Send + Sync {
    fn version(&self) -> Version;

    /// GET of many OIDs in one PDU. A tooBig answer is split by the
    /// implementation (halves, recursively); a single OID that is still too
    /// big is an error.
    fn get(&self, oids: &[Oid]) -> impl Future<Output = Result<Vec<VarBind>, SnmpError>> + Send;

    /// GETNEXT of several OIDs in one PDU (SNMPv1 walks).
    fn get_next(
        &self,
        oids: &[Oid],
    ) -> impl Future<Output = Result<Vec<VarBind>, SnmpError>> + Send;

    /// GETBULK: one GETNEXT of each of `non_repeaters` (answered first, in
    /// order), then `max_repetitions` rows of `oids`.
    fn get_bulk(
        &self,
        non_repeaters: &[Oid],
        oids: &[Oid],
        max_repetitions: u32,
    ) -> impl Future<Output = Result<Vec<VarBind>, SnmpError>> + Send;

    /// PDUs put on the wire so far (retransmissions, tooBig splits and
    /// SNMPv3 discovery included).
    fn requests_sent(&self) -> u32;

    /// Whether an SNMP engine answers at the agent's address at all, asked
    /// with an SNMPv3 engine discovery (which needs no credential). Used to
    /// tell a rejected community from a dead agent.
    fn engine_answers(&self, timeout: Duration) -> impl Future<Output = bool> + Send;

    /// For an SNMPv3 authPriv session whose requests went unanswered:
    /// whether the agent answers the same user at authNoPriv. net-snmp
    /// silently drops a request it cannot decrypt, so this is how a wrong
    /// privacy key is told from a dead agent. False for other sessions.
    fn answers_without_privacy(&self, timeout: Duration) -> impl Future<Output = bool> + Send;
}

/// SNMPv3 engine state learned from an agent, carried in `SnmpHints`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineHints {
    pub engine_id: Vec<u8>,
    pub engine_boots: u32,
    pub engine_time: u32,
    /// When `engine_time` was true.
    pub at: SystemTime,
}

/// What a session needs besides the credential.
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub address: SocketAddr,
    pub timeout: Duration,
    pub retries: u32,
}

/// Builds sessions on shared sockets. One per poller.
pub struct SnmpEngine {
    v4: lib::UdpTransport,
    /// None when the host has no IPv6 (the socket could not be bound).
    v6: Option<lib::UdpTransport>,
    engines: Arc<lib::EngineCache>,
    /// DES salts (RFC 3414 8.1.1.1: our "engine boots" and a counter) must
    /// never repeat for a key. The poller keeps no disk state, so its boots
    /// epoch is the second it started: distinct across restarts.
    des_salts: Option<lib::DesSaltState>,
}

/// Receive buffer of the shared sockets: thousands of agents answer into
/// one socket, and a burst must not overflow it (the kernel caps the value
/// at `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// The largest SNMPv3 message the poller says it can receive (`msgMaxSize`
/// in every request's header): a UDP datagram's whole payload, 65,507
/// bytes, as net-snmp's own tools advertise; the shared sockets accept that
/// much. async-snmp's default is 1,472, and net-snmp's agent builds each
/// response to the request's msgMaxSize: a GETBULK whose answer outgrows
/// 1,472 bytes under USM (a few dozen bindings of the host or interface
/// tables) fails to encode, and the agent answers genErr at index 0 in
/// place of a shorter answer. SNMPv1/v2c carry no such field, which is why
/// they were never affected. The poller's own bound on bindings per GETBULK
/// keeps real answers far below this.
const V3_MSG_MAX_SIZE: usize = 65_507;

/// Engines remembered at most (one per SNMPv3 agent address).
const ENGINE_CACHE_CAPACITY: usize = 200_000;

impl SnmpEngine {
    pub async fn new() -> Result<Self, SnmpError> {
        let v4 = lib::UdpTransport::builder()
            .bind("0.0.0.0:0")
            .receive_capacity(V3_MSG_MAX_SIZE)
            .recv_buffer_size(RECV_BUFFER)
            .build()
            .await
            .map_err(|e| SnmpError::Send(format!("binding the IPv4 SNMP socket: {e}")))?;
        let v6 = match lib::UdpTransport::builder()
            .bind("[::]:0")
            .receive_capacity(V3_MSG_MAX_SIZE)
            .recv_buffer_size(RECV_BUFFER)
            .build()
            .await
        {
            Ok(transport) => Some(transport),
            Err(error) => {
                tracing::warn!(%error, "no IPv6 SNMP socket; IPv6 agents will fail with SEND_ERROR");
                None
            }
        };
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .clamp(2, i32::MAX as u64) as u32;
        let des_salts = lib::v3::PersistedDesSaltState::new(started - 1)
            .and_then(|previous| {
                lib::DesSaltState::restart(previous, |_| Ok::<(), std::io::Error>(()))
            })
            .map_err(|error| tracing::warn!(%error, "no DES salt state; DES privacy unavailable"))
            .ok();
        Ok(Self {
            v4,
            v6,
            des_salts,
            engines: Arc::new(
                lib::EngineCache::new()
                    .with_max_capacity(ENGINE_CACHE_CAPACITY)
                    // The planner hands hints back every cycle; an engine
                    // not polled for a day is forgotten here.
                    .with_ttl(Duration::from_secs(24 * 3600)),
            ),
        })
    }

    /// Replies that matched no outstanding request (late, duplicate or
    /// spoofed), over both sockets.
    pub fn stray_replies(&self) -> u64 {
        let v6 = self
            .v6
            .as_ref()
            .map_or(0, |t| t.stats().discarded_datagrams);
        self.v4.stats().discarded_datagrams + v6
    }

    /// A session to one agent. `version` and the credential must agree
    /// (an unspecified one takes the other's value; both unspecified = v2c).
    pub fn session(
        &self,
        spec: &SessionSpec,
        version: v1::SnmpVersion,
        credential: &v1::ResolvedCredential,
        hints: Option<&EngineHints>,
    ) -> Result<AgentSession, SnmpError> {
        let version = resolve_version(version, credential)?;
        let auth = auth(version, credential)?;
        let auth_only = auth_only(version, credential);
        let transport = self.transport(spec.address)?;
        let handle = transport
            .handle(spec.address)
            .map_err(|e| SnmpError::Send(e.to_string()))?;
        let sent = Arc::new(AtomicU32::new(0));
        if version == Version::V3
            && let Some(hints) = hints
        {
            self.seed(spec.address, hints);
        }
        let mut builder =
            configure(lib::ClientBuilder::new(auth), spec).engine_cache(self.engines.clone());
        if let Some(salts) = &self.des_salts {
            builder = builder.des_salt_state(salts.clone());
        }
        let client = builder
            .build_with_transport(Counting {
                inner: handle,
                sent: sent.clone(),
            })
            .map_err(|e| SnmpError::Config(config_message(&e)))?;
        let probe = handle_for_probe(transport, spec.address)?;
        Ok(AgentSession {
            client,
            version,
            spec: spec.clone(),
            sent,
            probe,
            auth_only,
            engines: self.engines.clone(),
        })
    }

    /// The engine state known for an agent (after a v3 poll), for the hints.
    pub fn engine_hints(&self, address: SocketAddr) -> Option<EngineHints> {
        let state = self.engines.get(&address)?;
        let time = state.authenticated_time()?;
        Some(EngineHints {
            engine_id: state.engine_id().to_vec(),
            engine_boots: time.boots(),
            engine_time: time.latest_received_time(),
            at: SystemTime::now(),
        })
    }

    fn transport(&self, address: SocketAddr) -> Result<&lib::UdpTransport, SnmpError> {
        match address {
            SocketAddr::V4(_) => Ok(&self.v4),
            SocketAddr::V6(_) => self
                .v6
                .as_ref()
                .ok_or_else(|| SnmpError::Send("no IPv6 socket on this host".into())),
        }
    }

    /// Seeds the engine cache from hints another poll (maybe another
    /// poller) learned, so no discovery round trip is needed. The hints
    /// came from authenticated replies; the time is extrapolated to now.
    /// If they are stale (the agent rebooted), the agent answers
    /// notInTimeWindow and async-snmp resynchronises once.
    fn seed(&self, address: SocketAddr, hints: &EngineHints) {
        if hints.engine_id.is_empty() || self.engines.get(&address).is_some() {
            return;
        }
        let elapsed = SystemTime::now()
            .duration_since(hints.at)
            .unwrap_or_default()
            .as_secs();
        let time = u64::from(hints.engine_time)
            .saturating_add(elapsed)
            .min(i32::MAX as u64) as u32;
        let seeded = lib::DiscoveredEngine::new(
            hints.engine_id.clone(),
            lib::UDP_RECEIVE_LIMITS.advertised(),
        )
        .and_then(|engine| {
            self.engines
                .seed_authenticated(address, engine, hints.engine_boots, time)
        });
        if let Err(error) = seeded {
            tracing::debug!(%address, %error, "engine hints not usable; discovering");
        }
    }
}

fn configure(builder: lib::ClientBuilder, spec: &SessionSpec) -> lib::ClientBuilder {
    builder
        .request_timeout(spec.timeout)
        // Explicit: async-snmp's default is 3 retries 1 s apart. A
        // retransmission goes out as soon as the timeout expires.
        .retry(
            lib::Retry::fixed(spec.retries, Duration::ZERO).unwrap_or_else(|_| lib::Retry::none()),
        )
        // Scalars are grouped by the poller; the library only splits a PDU
        // when the agent answers tooBig.
        .max_oids_per_request(MAX_OIDS_PER_PDU)
        // Agents send usmStatsWrongDigests, UnknownUserNames, NotInTimeWindows
        // and UnsupportedSecLevels reports unauthenticated (RFC 3414 3.2):
        // without this async-snmp drops them and a wrong key looks like a
        // dead agent. The cost: someone who can inject packets matching the
        // request's ids can fail one poll or set the time of one request,
        // no more than dropping packets would do.
        .allow_unauthenticated_v3_time_correction(true)
}

/// OIDs per GET PDU at most (the poller's own grouping is smaller).
const MAX_OIDS_PER_PDU: usize = 64;

/// A second handle on the same socket for [`Session::engine_answers`]: a
/// v3 client without the shared engine cache, so a probe never pollutes it.
fn handle_for_probe(
    transport: &lib::UdpTransport,
    address: SocketAddr,
) -> Result<lib::UdpHandle, SnmpError> {
    transport
        .handle(address)
        .map_err(|e| SnmpError::Send(e.to_string()))
}

fn resolve_version(
    version: v1::SnmpVersion,
    credential: &v1::ResolvedCredential,
) -> Result<Version, SnmpError> {
    use v1::SnmpVersion as V;
    let credential_version = credential.version();
    let chosen = match (version, credential_version) {
        (V::Unspecified, V::Unspecified) => V::V2c,
        (V::Unspecified, other) | (other, V::Unspecified) => other,
        (a, b) if a == b => a,
        (a, b) => {
            return Err(SnmpError::Config(format!(
                "target version {} does not match credential version {}",
                a.as_str_name(),
                b.as_str_name()
            )));
        }
    };
    Ok(match chosen {
        V::V1 => Version::V1,
        V::V3 => Version::V3,
        _ => Version::V2c,
    })
}

fn auth(version: Version, credential: &v1::ResolvedCredential) -> Result<lib::Auth, SnmpError> {
    match version {
        Version::V1 | Version::V2c => {
            if credential.community.is_empty() {
                return Err(SnmpError::Config("the credential has no community".into()));
            }
            let community = credential.community.as_bytes().to_vec();
            Ok(if version == Version::V1 {
                lib::Auth::v1(community)
            } else {
                lib::Auth::v2c(community)
            })
        }
        Version::V3 => usm(credential).map(lib::Auth::Usm),
    }
}

/// The same user at authNoPriv, for an authPriv credential (see
/// `Session::answers_without_privacy`).
fn auth_only(version: Version, credential: &v1::ResolvedCredential) -> Option<lib::UsmConfig> {
    use v1::SnmpPrivProtocol as P;
    if version != Version::V3 || matches!(credential.priv_protocol(), P::Unspecified | P::None) {
        return None;
    }
    let mut without_privacy = credential.clone();
    without_privacy.priv_protocol = P::None as i32;
    without_privacy.priv_key.clear();
    usm(&without_privacy).ok()
}

fn usm(credential: &v1::ResolvedCredential) -> Result<lib::UsmConfig, SnmpError> {
    use v1::{SnmpAuthProtocol as A, SnmpPrivProtocol as P};
    if credential.username.is_empty() {
        return Err(SnmpError::Config(
            "the SNMPv3 credential has no user name".into(),
        ));
    }
    let auth = match credential.auth_protocol() {
        A::Unspecified | A::None => None,
        A::Md5 => Some(lib::AuthProtocol::Md5),
        A::Sha1 => Some(lib::AuthProtocol::Sha1),
        A::Sha224 => Some(lib::AuthProtocol::Sha224),
        A::Sha256 => Some(lib::AuthProtocol::Sha256),
        A::Sha384 => Some(lib::AuthProtocol::Sha384),
        A::Sha512 => Some(lib::AuthProtocol::Sha512),
    };
    let privacy = match credential.priv_protocol() {
        P::Unspecified | P::None => None,
        P::Des => Some(lib::PrivProtocol::Des),
        P::Aes128 => Some(lib::PrivProtocol::Aes128),
        // The proto names the Blumenthal key extension (as net-snmp).
        P::Aes192 => Some(lib::PrivProtocol::Aes192Blumenthal),
        P::Aes256 => Some(lib::PrivProtocol::Aes256Blumenthal),
    };
    let config = lib::UsmConfig::new(credential.username.as_bytes().to_vec())
        .context_name(credential.context_name.as_bytes().to_vec());
    let key_problem = |what: &str| {
        SnmpError::Config(format!(
            "the {what} key is not usable (at least 8 characters are required)"
        ))
    };
    match (auth, privacy) {
        (None, None) => Ok(config),
        (None, Some(_)) => Err(SnmpError::Config(
            "privacy requires an authentication protocol".into(),
        )),
        (Some(auth), None) => config
            .auth(auth, credential.auth_key.as_bytes())
            .map_err(|_| key_problem("authentication")),
        (Some(auth), Some(privacy)) => {
            if credential.auth_key.len() < 8 {
                return Err(key_problem("authentication"));
            }
            config
                .auth_priv(
                    auth,
                    credential.auth_key.as_bytes(),
                    privacy,
                    credential.priv_key.as_bytes(),
                )
                .map_err(|_| key_problem("privacy"))
        }
    }
}

/// A library configuration error in words that carry no secret.
fn config_message(error: &lib::Error) -> String {
    match error.exchange_source() {
        lib::Error::Config(message) => message.to_string(),
        other => other.kind().to_string(),
    }
}

/// A transport that counts the requests it puts on the wire, so a sample
/// says exactly how many PDUs its device cost (retransmissions, tooBig
/// splits and SNMPv3 discovery included).
struct Counting {
    inner: lib::UdpHandle,
    sent: Arc<AtomicU32>,
}

impl lib::Transport for Counting {
    fn send(&self, data: &[u8]) -> impl Future<Output = lib::Result<()>> + Send {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.send(data)
    }

    fn request_with<T, F>(
        &self,
        data: &[u8],
        registration: lib::RequestRegistration,
        validate: F,
    ) -> impl Future<Output = lib::Result<T>> + Send
    where
        T: Send,
        F: FnMut(bytes::Bytes, SocketAddr) -> lib::Result<lib::Candidate<T>> + Send,
    {
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.inner.request_with(data, registration, validate)
    }

    fn peer_addr(&self) -> SocketAddr {
        self.inner.peer_addr()
    }

    fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr()
    }

    fn alloc_request_id(&self) -> i32 {
        self.inner.alloc_request_id()
    }

    fn is_reliable(&self) -> bool {
        self.inner.is_reliable()
    }

    fn receive_limits(&self) -> lib::ReceiveLimits {
        self.inner.receive_limits()
    }

    fn send_capacity(&self) -> usize {
        self.inner.send_capacity()
    }
}

/// The real [`Session`], over async-snmp.
pub struct AgentSession {
    client: lib::Client<Counting>,
    version: Version,
    spec: SessionSpec,
    sent: Arc<AtomicU32>,
    probe: lib::UdpHandle,
    auth_only: Option<lib::UsmConfig>,
    engines: Arc<lib::EngineCache>,
}

impl AgentSession {
    fn error(&self, error: &lib::Error) -> SnmpError {
        classify(error, &self.spec)
    }
}

impl Session for AgentSession {
    fn version(&self) -> Version {
        self.version
    }

    async fn get(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
        let oids = to_lib(oids);
        match self.client.get_many(&oids).await {
            Ok(response) => Ok(from_lib(response.varbinds)),
            Err(error) => Err(self.error(&error)),
        }
    }

    async fn get_next(&self, oids: &[Oid]) -> Result<Vec<VarBind>, SnmpError> {
        let oids = to_lib(oids);
        match self.client.get_next_many(&oids).await {
            Ok(response) => Ok(from_lib(response.varbinds)),
            Err(error) => Err(self.error(&error)),
        }
    }

    async fn get_bulk(
        &self,
        non_repeaters: &[Oid],
        oids: &[Oid],
        max_repetitions: u32,
    ) -> Result<Vec<VarBind>, SnmpError> {
        let count = u32::try_from(non_repeaters.len())
            .map_err(|_| SnmpError::Config("too many non-repeaters".into()))?;
        let mut all = to_lib(non_repeaters);
        all.extend(to_lib(oids));
        match self.client.get_bulk(&all, count, max_repetitions).await {
            Ok(varbinds) => Ok(from_lib(varbinds)),
            Err(error) => Err(self.error(&error)),
        }
    }

    fn requests_sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    async fn engine_answers(&self, timeout: Duration) -> bool {
        // Any user name will do: the discovery step (an empty-user,
        // reportable request) is answered before the user is looked at.
        let probe = lib::ClientBuilder::new(lib::UsmConfig::new(&b"netward-probe"[..]))
            .request_timeout(timeout)
            .retry(lib::Retry::none())
            .build_with_transport(Counting {
                inner: self.probe.clone(),
                sent: self.sent.clone(),
            });
        match answered(probe, &self.spec).await {
            Ok(()) => true,
            Err(error) => !matches!(error, SnmpError::Timeout { .. } | SnmpError::Send(_)),
        }
    }

    async fn answers_without_privacy(&self, timeout: Duration) -> bool {
        let Some(auth_only) = self.auth_only.clone() else {
            return false;
        };
        let probe = configure(lib::ClientBuilder::new(auth_only), &self.spec)
            .request_timeout(timeout)
            .retry(lib::Retry::none())
            .engine_cache(self.engines.clone())
            .build_with_transport(Counting {
                inner: self.probe.clone(),
                sent: self.sent.clone(),
            });
        // Any answer but silence or a credential problem (the agent may
        // well refuse this user without privacy: authorizationError) shows
        // that the user and the authentication key are right.
        match answered(probe, &self.spec).await {
            Ok(()) => true,
            Err(error) => !matches!(
                error,
                SnmpError::Timeout { .. }
                    | SnmpError::Send(_)
                    | SnmpError::AuthFailure
                    | SnmpError::UnknownUser
                    | SnmpError::Config(_)
            ),
        }
    }
}

/// Sends one GET of sysUpTime.0 on a probe client; Ok when answered.
async fn answered(
    client: Result<lib::Client<Counting>, Box<lib::Error>>,
    spec: &SessionSpec,
) -> Result<(), SnmpError> {
    let client = client.map_err(|e| classify(&e, spec))?;
    match client
        .get(&lib::Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 3, 0]))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) => Err(classify(&error, spec)),
    }
}

fn to_lib(oids: &[Oid]) -> Vec<lib::Oid> {
    oids.iter()
        .map(|oid| lib::Oid::from_slice(oid.arcs()))
        .collect()
}

fn from_lib(varbinds: Vec<lib::VarBind>) -> Vec<VarBind> {
    varbinds
        .into_iter()
        .map(|vb| VarBind {
            oid: Oid(vb.oid.arcs().to_vec()),
            value: value_from_lib(vb.value),
        })
        .collect()
}

/// Decodes one datagram with the library's decoders the poller's client
/// runs on what agents send (a whole message of any version, in the
/// client's compatible mode and in strict mode; the SNMPv3 envelope and its
/// USM parameters, read before any key is applied), and converts a PDU's
/// varbinds as the poller does. Not API: the entry point of the SNMP fuzz
/// target (fuzz/). `None` when no decoder yields a PDU.
#[doc(hidden)]
pub fn decode_response(datagram: &[u8]) -> Option<Vec<VarBind>> {
    let data = bytes::Bytes::copy_from_slice(datagram);
    if let Ok(raw) = lib::message::RawV3Message::decode(data.clone(), lib::DecodeConfig::default())
    {
        let _ = lib::v3::UsmSecurityParams::decode(
            raw.value.security_params().clone(),
            lib::DecodeConfig::default(),
        );
    }
    let mut varbinds = None;
    for config in [lib::DecodeConfig::STRICT, lib::DecodeConfig::default()] {
        if let Ok(outcome) = lib::message::Message::decode(data.clone(), config)
            && let Some(pdu) = outcome.value.into_pdu()
        {
            let _ = (pdu.error_fields(), pdu.error_status_enum());
            varbinds = Some(from_lib(pdu.into_varbinds()));
        }
    }
    varbinds
}

fn value_from_lib(value: lib::Value) -> Value {
    use lib::Value as L;
    match value {
        L::Integer(v) => Value::Integer(i64::from(v)),
        L::OctetString(bytes) => Value::OctetString(bytes.to_vec()),
        L::Null => Value::Null,
        L::ObjectIdentifier(oid) => Value::ObjectId(Oid(oid.arcs().to_vec())),
        L::IpAddress(ip) => Value::IpAddress(ip),
        L::Counter32(v) => Value::Counter32(v),
        L::Gauge32(v) | L::UInteger32(v) => Value::Gauge32(v),
        L::TimeTicks(v) => Value::TimeTicks(v),
        L::Opaque(bytes) | L::Nsap(bytes) => Value::Opaque(bytes.to_vec()),
        L::Counter64(v) => Value::Counter64(v),
        L::NoSuchObject => Value::NoSuchObject,
        L::NoSuchInstance => Value::NoSuchInstance,
        L::EndOfMibView => Value::EndOfMibView,
        // A type the library kept but does not know: not a value the
        // poller can use; treated like a missing object.
        _ => Value::NoSuchObject,
    }
}

/// Maps an async-snmp error onto the poller's. The library's messages are
/// not passed on verbatim where they could grow to include request data.
fn classify(error: &lib::Error, spec: &SessionSpec) -> SnmpError {
    use lib::Error as E;
    match error.exchange_source() {
        E::Timeout { retries, .. } => SnmpError::Timeout {
            timeout_ms: spec.timeout.as_millis() as u64,
            attempts: retries + 1,
        },
        E::Network { source, .. } => SnmpError::Send(source.to_string()),
        E::Closed { .. } => SnmpError::Send("the SNMP socket was closed".into()),
        E::RequestIdInUse { .. } | E::RandomSource { .. } => {
            SnmpError::Send(error.kind().to_string())
        }
        E::OutboundMessageTooLarge { .. } => SnmpError::Agent {
            status: AgentStatus::TooBig,
            index: 0,
        },
        E::Snmp { status, index, .. } => SnmpError::Agent {
            status: match status {
                lib::ErrorStatus::TooBig => AgentStatus::TooBig,
                lib::ErrorStatus::NoSuchName => AgentStatus::NoSuchName,
                other => AgentStatus::Other(other.as_i32()),
            },
            index: *index,
        },
        E::Auth { .. } => SnmpError::AuthFailure,
        E::Report { status, .. } => match status.as_ref() {
            lib::v3::ReportStatus::WrongDigest { .. } => SnmpError::AuthFailure,
            lib::v3::ReportStatus::UnknownUserName { .. } => SnmpError::UnknownUser,
            lib::v3::ReportStatus::DecryptionError { .. } => SnmpError::DecryptionError,
            lib::v3::ReportStatus::UnsupportedSecurityLevel { .. } => {
                SnmpError::UnsupportedSecurityLevel
            }
            lib::v3::ReportStatus::NotInTimeWindow { .. } => SnmpError::NotInTimeWindow,
            lib::v3::ReportStatus::UnknownEngineId { .. } => SnmpError::Protocol(
                "the agent kept rejecting its own engine id (usmStatsUnknownEngineIDs)".into(),
            ),
            other => SnmpError::Protocol(format!("unexpected SNMPv3 report: {other}")),
        },
        E::Privacy(_) => SnmpError::UndecryptableReply,
        E::Decode(decode) => SnmpError::Protocol(decode.kind.to_string()),
        E::MalformedResponse { .. } => SnmpError::Protocol("malformed response".into()),
        E::ResponseShape { .. } => {
            SnmpError::Protocol("response does not match the request".into())
        }
        E::InvalidMessage(_) => SnmpError::Protocol("invalid SNMP message".into()),
        E::Config(message) => SnmpError::Config(message.to_string()),
        E::InvalidOid(_) => SnmpError::Config("invalid OID in the profile".into()),
        other => SnmpError::Protocol(other.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_response_reads_a_v2c_response() {
        let pdu = lib::ResponsePdu::success(
            lib::Version::V2c,
            7,
            vec![lib::VarBind::new(
                lib::Oid::from_slice(&[1, 3, 6, 1, 2, 1, 1, 3, 0]),
                lib::Value::TimeTicks(42),
            )],
        )
        .unwrap();
        let message = lib::message::CommunityMessage::v2c("public", pdu).unwrap();
        let bytes = message.encode().unwrap();
        let varbinds = decode_response(&bytes).unwrap();
        assert_eq!(varbinds.len(), 1);
        assert_eq!(varbinds[0].oid.to_string(), "1.3.6.1.2.1.1.3.0");
        assert_eq!(varbinds[0].value.as_u64(), Some(42));
        assert!(decode_response(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode_response(b"").is_none());
    }

    #[test]
    fn oids_parse_order_and_strip() {
        let column = Oid::parse(".1.3.6.1.2.1.2.2.1.8").unwrap_or_default();
        assert_eq!(column.to_string(), "1.3.6.1.2.1.2.2.1.8");
        let cell = column.child(12);
        assert_eq!(cell.suffix_after(&column), Some(&[12u32][..]));
        assert_eq!(column.suffix_after(&column), None);
        assert!(column < cell && cell < Oid::parse("1.3.6.1.2.1.2.2.1.9").unwrap_or_default());
        for bad in ["", "1", "1.x.3", "1..2", "1.3.-1"] {
            assert!(Oid::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_must_agree_with_the_credential() {
        use v1::SnmpVersion as V;
        let credential = |version: V| v1::ResolvedCredential {
            version: version as i32,
            ..Default::default()
        };
        assert_eq!(
            resolve_version(V::Unspecified, &credential(V::Unspecified)),
            Ok(Version::V2c)
        );
        assert_eq!(
            resolve_version(V::V3, &credential(V::Unspecified)),
            Ok(Version::V3)
        );
        assert_eq!(
            resolve_version(V::Unspecified, &credential(V::V1)),
            Ok(Version::V1)
        );
        assert!(matches!(
            resolve_version(V::V2c, &credential(V::V3)),
            Err(SnmpError::Config(_))
        ));
    }

    #[test]
    fn bad_credentials_are_config_errors_that_name_no_secret() {
        let secret = "s3cr3t-key";
        let cases = [
            v1::ResolvedCredential {
                version: v1::SnmpVersion::V2c as i32,
                ..Default::default()
            },
            v1::ResolvedCredential {
                version: v1::SnmpVersion::V3 as i32,
                username: String::new(),
                ..Default::default()
            },
            v1::ResolvedCredential {
                version: v1::SnmpVersion::V3 as i32,
                username: "ops".into(),
                auth_protocol: v1::SnmpAuthProtocol::Sha256 as i32,
                auth_key: "short".into(),
                ..Default::default()
            },
            v1::ResolvedCredential {
                version: v1::SnmpVersion::V3 as i32,
                username: "ops".into(),
                auth_protocol: v1::SnmpAuthProtocol::None as i32,
                priv_protocol: v1::SnmpPrivProtocol::Aes128 as i32,
                priv_key: secret.into(),
                ..Default::default()
            },
        ];
        for credential in cases {
            let version =
                resolve_version(v1::SnmpVersion::Unspecified, &credential).unwrap_or(Version::V2c);
            match auth(version, &credential) {
                Err(error @ SnmpError::Config(_)) => {
                    assert!(!error.to_string().contains(secret), "{error}");
                    assert_eq!(error.outcome(), v1::SnmpOutcome::ConfigError);
                }
                Err(other) => panic!("expected a config error, got {other}"),
                Ok(_) => panic!("accepted {credential:?}"),
            }
        }
    }
}
