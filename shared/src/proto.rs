//! The generated code for `proto/netward/v1`, and the encoded descriptor set
//! that server reflection serves (so grpcurl needs no .proto files).

/// Messages, clients and servers of package `netward.v1`.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used, missing_docs)]
pub mod v1 {
    tonic::include_proto!("netward.v1");
}

/// Every `netward.v1` file, encoded as a `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/netward_descriptor.bin"));

/// Debug for the messages that carry SNMP secrets: every field but the
/// secrets, which print as set or not (see `SECRET_MESSAGES` in build.rs).
mod redacted {
    use std::fmt;

    use super::v1;

    fn set(secret: &str) -> &'static str {
        if secret.is_empty() { "" } else { "[redacted]" }
    }

    impl fmt::Debug for v1::ResolvedCredential {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ResolvedCredential")
                .field("id", &self.id)
                .field("name", &self.name)
                .field("version", &self.version)
                .field("community", &set(&self.community))
                .field("username", &self.username)
                .field("auth_protocol", &self.auth_protocol)
                .field("auth_key", &set(&self.auth_key))
                .field("priv_protocol", &self.priv_protocol)
                .field("priv_key", &set(&self.priv_key))
                .field("context_name", &self.context_name)
                .field("updated_at", &self.updated_at)
                .finish()
        }
    }

    impl fmt::Debug for v1::CreateCredentialRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateCredentialRequest")
                .field("name", &self.name)
                .field("version", &self.version)
                .field("community", &set(&self.community))
                .field("username", &self.username)
                .field("auth_protocol", &self.auth_protocol)
                .field("auth_key", &set(&self.auth_key))
                .field("priv_protocol", &self.priv_protocol)
                .field("priv_key", &set(&self.priv_key))
                .field("context_name", &self.context_name)
                .field("description", &self.description)
                .finish()
        }
    }

    impl fmt::Debug for v1::UpdateCredentialRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let opt = |secret: &Option<String>| secret.as_deref().map(set);
            f.debug_struct("UpdateCredentialRequest")
                .field("id", &self.id)
                .field("name", &self.name)
                .field("version", &self.version)
                .field("community", &opt(&self.community))
                .field("username", &self.username)
                .field("auth_protocol", &self.auth_protocol)
                .field("auth_key", &opt(&self.auth_key))
                .field("priv_protocol", &self.priv_protocol)
                .field("priv_key", &opt(&self.priv_key))
                .field("context_name", &self.context_name)
                .field("description", &self.description)
                .finish()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::v1;

        #[test]
        fn secrets_never_reach_debug_output() {
            let resolved = v1::ResolvedCredential {
                community: "c0mmunity".into(),
                auth_key: "authpass1".into(),
                priv_key: "privpass1".into(),
                username: "ops".into(),
                ..Default::default()
            };
            let create = v1::CreateCredentialRequest {
                community: "c0mmunity".into(),
                auth_key: "authpass1".into(),
                ..Default::default()
            };
            let update = v1::UpdateCredentialRequest {
                priv_key: Some("privpass1".into()),
                ..Default::default()
            };
            let target = v1::SnmpTarget {
                credential: Some(resolved.clone()),
                ..Default::default()
            };
            for text in [
                format!("{resolved:?}"),
                format!("{create:?}"),
                format!("{update:?}"),
                format!("{target:?}"),
            ] {
                for secret in ["c0mmunity", "authpass1", "privpass1"] {
                    assert!(!text.contains(secret), "{text}");
                }
                assert!(text.contains("[redacted]"), "{text}");
            }
            assert!(format!("{resolved:?}").contains("ops"));
        }
    }
}
