//! The inventory's error type, and the one place that turns database errors
//! into it (constraint names become the fields and reasons a caller sees).

use netward_shared::status::{DbErrorKind, FieldViolation, classify_sqlx};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", list(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{what} {key} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{field} {value:?} already exists")]
    AlreadyExists { field: &'static str, value: String },
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn list(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, value, reason)])
    }

    pub fn not_found(what: &'static str, key: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what,
            key: key.to_string(),
        }
    }
}

/// Maps a store error. `value` is the offending value when the caller knows
/// it (the name or address it tried to write), for ALREADY_EXISTS messages.
/// Both stores name constraints as the PostgreSQL schema does (the SQLite
/// store translates its own reports), so one table serves both backends.
pub fn from_store(error: sqlx::Error, value: &str) -> Error {
    match classify_sqlx(&error) {
        DbErrorKind::UniqueViolation(constraint) => {
            let field = match constraint.as_deref() {
                Some("sites_name_key") => "site.name",
                Some("sites_code_key") => "site.code",
                Some("devices_name_key") => "device.name",
                Some("devices_ip_address_key") => "device.ip_address",
                Some("credentials_name_key") => "credential.name",
                Some("interface_overrides_pkey") => "interface_override",
                _ => "value",
            };
            Error::AlreadyExists {
                field,
                value: value.to_string(),
            }
        }
        DbErrorKind::ForeignKeyViolation(constraint) => Error::FailedPrecondition(
            match constraint.as_deref() {
                Some("devices_site_fkey") => {
                    "the site still has devices; move or delete them first"
                }
                Some("devices_parent_fkey") => {
                    "the device is the parent of other devices; re-parent them first"
                }
                Some("devices_credential_fkey") => {
                    "the credential is used by devices; change their SNMP settings first"
                }
                _ => "a referenced record is missing or still referenced",
            }
            .to_string(),
        ),
        DbErrorKind::CheckViolation(constraint) => Error::Internal(format!(
            "a database check failed ({})",
            constraint.unwrap_or_default()
        )),
        DbErrorKind::Unavailable => Error::Unavailable(error.to_string()),
        DbErrorKind::Other => match error {
            sqlx::Error::RowNotFound => Error::not_found("record", value),
            other => Error::Internal(other.to_string()),
        },
    }
}
