//! Batch grants: the planner's signed statement "executor E may report
//! results for these devices of batch B until T". An executor token proves
//! who is calling; the grant proves what it was asked to probe, so a stolen
//! or compromised branch executor cannot forge results for devices it was
//! never assigned.

use hmac::{Hmac, KeyInit, Mac};
use prost::Message;
use sha2::Sha256;

use crate::proto::v1;
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The shared key (`auth.grant_key`, hex, ≥ 32 bytes).
#[derive(Clone)]
pub struct GrantKey(Secret<Vec<u8>>);

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey([redacted])")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("no grant: results from an executor token must carry their assignment's grant")]
    Missing,
    #[error(
        "the grant's signature does not verify (forged, or signed with another auth.grant_key)"
    )]
    BadSignature,
    #[error("the grant does not decode")]
    Malformed,
    #[error("the grant was issued to {granted:?}, not to the caller {caller:?}")]
    WrongExecutor { granted: String, caller: String },
    #[error("the grant is for batch {granted:?}, the results name batch {batch:?}")]
    WrongBatch { granted: String, batch: String },
    #[error("the grant expired at {expires_unix} (unix seconds)")]
    Expired { expires_unix: i64 },
    #[error("device {device_id:?} is not in the batch's grant")]
    DeviceNotGranted { device_id: String },
}

impl GrantKey {
    /// From the configured hex; at least 32 bytes.
    pub fn parse(hex_key: &Secret<String>) -> Result<Self, GrantError> {
        let bytes = hex::decode(hex_key.expose().trim()).map_err(|_| GrantError::Malformed)?;
        if bytes.len() < 32 {
            return Err(GrantError::Malformed);
        }
        Ok(Self(Secret::new(bytes)))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as KeyInit>::new_from_slice(self.0.expose())
            .expect("HMAC takes keys of any length")
    }

    /// Signs `grant`.
    pub fn sign(&self, grant: &v1::BatchGrant) -> v1::SignedGrant {
        let encoded = grant.encode_to_vec();
        let mut mac = self.mac();
        mac.update(&encoded);
        v1::SignedGrant {
            signature: mac.finalize().into_bytes().to_vec(),
            grant: encoded,
        }
    }

    /// The grant inside `signed`, when its signature is this key's.
    pub fn verify(&self, signed: &v1::SignedGrant) -> Result<v1::BatchGrant, GrantError> {
        let mut mac = self.mac();
        mac.update(&signed.grant);
        mac.verify_slice(&signed.signature)
            .map_err(|_| GrantError::BadSignature)?;
        v1::BatchGrant::decode(signed.grant.as_slice()).map_err(|_| GrantError::Malformed)
    }
}

/// Packs device ids (UUID text) 16 bytes each; an id that is not a UUID is
/// left out, so results for it are refused rather than let through.
pub fn pack_device_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut packed = Vec::new();
    for id in ids {
        if let Ok(uuid) = uuid::Uuid::parse_str(id) {
            packed.extend_from_slice(uuid.as_bytes());
        }
    }
    packed
}

/// A verified grant, ready to check the results of one ResultBatch.
#[derive(Debug)]
pub struct VerifiedGrant {
    grant: v1::BatchGrant,
}

impl VerifiedGrant {
    /// Verifies `signed` for a batch reported by the executor token `caller`
    /// under `batch_id`, at `now_unix`.
    pub fn check(
        key: &GrantKey,
        signed: Option<&v1::SignedGrant>,
        caller: &str,
        batch_id: &str,
        now_unix: i64,
    ) -> Result<Self, GrantError> {
        let grant = key.verify(signed.ok_or(GrantError::Missing)?)?;
        if grant.executor != caller {
            return Err(GrantError::WrongExecutor {
                granted: grant.executor,
                caller: caller.to_string(),
            });
        }
        if grant.batch_id != batch_id {
            return Err(GrantError::WrongBatch {
                granted: grant.batch_id,
                batch: batch_id.to_string(),
            });
        }
        if now_unix > grant.expires_unix {
            return Err(GrantError::Expired {
                expires_unix: grant.expires_unix,
            });
        }
        Ok(Self { grant })
    }

    /// Whether the grant names `device_id`.
    pub fn covers(&self, device_id: &str) -> bool {
        let Ok(uuid) = uuid::Uuid::parse_str(device_id) else {
            return false;
        };
        self.grant
            .device_ids
            .chunks_exact(16)
            .any(|chunk| chunk == uuid.as_bytes())
    }

    /// The first of `device_ids` the grant does not name, as an error.
    pub fn require_all<'a>(
        &self,
        device_ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), GrantError> {
        for id in device_ids {
            if !self.covers(id) {
                return Err(GrantError::DeviceNotGranted {
                    device_id: id.to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0191e3c2-7d3a-7b6e-8000-000000000001";
    const B: &str = "0191e3c2-7d3a-7b6e-8000-000000000002";
    const C: &str = "0191e3c2-7d3a-7b6e-8000-000000000003";

    fn key(byte: u8) -> GrantKey {
        GrantKey::parse(&Secret::new(hex::encode([byte; 32]))).unwrap()
    }

    fn grant() -> v1::BatchGrant {
        v1::BatchGrant {
            executor: "branch-17".into(),
            batch_id: "ping-7-0".into(),
            cycle_id: 7,
            kind: v1::ExecutorKind::Ping as i32,
            expires_unix: 1_000,
            device_ids: pack_device_ids([A, B]),
        }
    }

    #[test]
    fn a_signed_grant_covers_its_devices_only() {
        let signed = key(1).sign(&grant());
        let verified =
            VerifiedGrant::check(&key(1), Some(&signed), "branch-17", "ping-7-0", 999).unwrap();
        assert!(verified.covers(A) && verified.covers(B));
        assert!(!verified.covers(C) && !verified.covers("not-a-uuid"));
        assert_eq!(verified.require_all([A, B]), Ok(()));
        assert_eq!(
            verified.require_all([A, C]),
            Err(GrantError::DeviceNotGranted {
                device_id: C.into()
            })
        );
    }

    #[test]
    fn forged_stolen_or_stale_grants_are_refused() {
        let signed = key(1).sign(&grant());
        let check = |key: &GrantKey, signed: Option<&v1::SignedGrant>, caller, batch, now| {
            VerifiedGrant::check(key, signed, caller, batch, now).map(|_| ())
        };
        assert_eq!(
            check(&key(2), Some(&signed), "branch-17", "ping-7-0", 0),
            Err(GrantError::BadSignature)
        );
        let mut tampered = signed.clone();
        let mut widened = grant();
        widened.device_ids = pack_device_ids([A, B, C]);
        tampered.grant = widened.encode_to_vec();
        assert_eq!(
            check(&key(1), Some(&tampered), "branch-17", "ping-7-0", 0),
            Err(GrantError::BadSignature)
        );
        assert_eq!(
            check(&key(1), Some(&signed), "branch-18", "ping-7-0", 0),
            Err(GrantError::WrongExecutor {
                granted: "branch-17".into(),
                caller: "branch-18".into()
            })
        );
        assert_eq!(
            check(&key(1), Some(&signed), "branch-17", "ping-8-0", 0),
            Err(GrantError::WrongBatch {
                granted: "ping-7-0".into(),
                batch: "ping-8-0".into()
            })
        );
        assert_eq!(
            check(&key(1), Some(&signed), "branch-17", "ping-7-0", 1_001),
            Err(GrantError::Expired {
                expires_unix: 1_000
            })
        );
        assert_eq!(
            check(&key(1), None, "branch-17", "ping-7-0", 0),
            Err(GrantError::Missing)
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(GrantKey::parse(&Secret::new(hex::encode([0u8; 31]))).is_err());
        assert!(GrantKey::parse(&Secret::new("zz".repeat(32))).is_err());
    }
}
