//! Encryption of SNMP secrets at rest: XChaCha20-Poly1305 with a 256-bit key
//! from `NETWARD_SECRET_KEY`. Each ciphertext is bound to its credential and
//! field (associated data), so a ciphertext copied onto another row or field
//! does not decrypt.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use netward_shared::secret::Secret;
use rand::RngCore;
use uuid::Uuid;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "NETWARD_SECRET_KEY must be 64 hexadecimal characters (32 bytes; e.g. `openssl rand -hex 32`)"
    )]
    BadKey,
    #[error(
        "a stored secret does not decrypt with NETWARD_SECRET_KEY (wrong key, or the data was altered)"
    )]
    Undecryptable,
}

/// Seals and opens secrets with the configured key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    /// The key as 64 hexadecimal characters.
    pub fn from_hex(key: &Secret<String>) -> Result<Self, CryptoError> {
        let bytes = hex::decode(key.expose().trim()).map_err(|_| CryptoError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    /// `nonce || ciphertext` of `plaintext`, bound to (credential, field).
    pub fn seal(&self, credential_id: Uuid, field: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(credential_id, field);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a short secret cannot fail");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(
        &self,
        credential_id: Uuid,
        field: &str,
        sealed: &[u8],
    ) -> Result<Secret<String>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Undecryptable)?;
        let aad = associated_data(credential_id, field);
        let plaintext = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Undecryptable)?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| CryptoError::Undecryptable)
    }
}

fn associated_data(credential_id: Uuid, field: &str) -> Vec<u8> {
    let mut aad = credential_id.as_bytes().to_vec();
    aad.extend_from_slice(field.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Secret<String> {
        Secret::new(text.to_string())
    }

    #[test]
    fn round_trip_and_binding() {
        let sealer = SecretBox::from_hex(&key(&"11".repeat(32))).unwrap();
        let id = Uuid::new_v4();
        let sealed = sealer.seal(id, "community", "public-but-secret");
        assert!(
            !sealed.windows(6).any(|w| w == b"public"),
            "plaintext visible"
        );
        assert_eq!(
            sealer.open(id, "community", &sealed).unwrap().expose(),
            "public-but-secret"
        );
        // Bound to its row and field.
        assert!(sealer.open(Uuid::new_v4(), "community", &sealed).is_err());
        assert!(sealer.open(id, "auth_key", &sealed).is_err());
        // Another key does not open it; truncated data is an error, not a panic.
        let other = SecretBox::from_hex(&key(&"22".repeat(32))).unwrap();
        assert!(other.open(id, "community", &sealed).is_err());
        assert!(sealer.open(id, "community", &sealed[..10]).is_err());
        // Two seals of the same text differ (random nonces).
        assert_ne!(sealed, sealer.seal(id, "community", "public-but-secret"));
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in ["", "abc", &"zz".repeat(32), &"11".repeat(16)] {
            assert!(SecretBox::from_hex(&key(bad)).is_err(), "{bad}");
        }
    }
}
