//! Error → `tonic::Status` helpers shared by every service adapter: precise
//! `INVALID_ARGUMENT`s with field violations (the `google.rpc.BadRequest`
//! standard form), and one classification of database errors that each
//! service maps onto its own error enum.

use std::collections::HashMap;
use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field: which field, what value was given, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl FieldViolation {
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.reason)
    }
}

/// `INVALID_ARGUMENT` naming every violation in the message (for grpcurl
/// and logs) and in `BadRequest` details (for programs).
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for violation in violations {
        details.add_bad_request_violation(
            violation.field.clone(),
            format!("{:?}: {}", violation.value, violation.reason),
        );
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// What a database error means to a service, whatever the backend
/// (PostgreSQL error codes and SQLite extended codes map alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbErrorKind {
    /// A unique constraint; carries the constraint name when known.
    UniqueViolation(Option<String>),
    /// A foreign key: the referenced row is missing, or is still referenced.
    ForeignKeyViolation(Option<String>),
    /// A CHECK or NOT NULL constraint.
    CheckViolation(Option<String>),
    /// The database is unreachable, overloaded or the pool timed out: retry.
    Unavailable,
    /// Anything else: a bug or a broken schema.
    Other,
}

/// Classifies an sqlx error.
pub fn classify_sqlx(error: &sqlx::Error) -> DbErrorKind {
    use sqlx::error::ErrorKind;
    match error {
        sqlx::Error::Database(db) => {
            let constraint = db.constraint().map(str::to_string);
            match db.kind() {
                ErrorKind::UniqueViolation => DbErrorKind::UniqueViolation(constraint),
                ErrorKind::ForeignKeyViolation => DbErrorKind::ForeignKeyViolation(constraint),
                ErrorKind::NotNullViolation | ErrorKind::CheckViolation => {
                    DbErrorKind::CheckViolation(constraint)
                }
                _ => match db.code().as_deref() {
                    // PostgreSQL: too many connections, cannot connect now,
                    // admin shutdown, serialization failure.
                    Some("53300" | "57P03" | "57P01" | "40001") => DbErrorKind::Unavailable,
                    _ => DbErrorKind::Other,
                },
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => DbErrorKind::Unavailable,
        _ => DbErrorKind::Other,
    }
}

/// Why the database refused the data itself, when it did: for PostgreSQL a
/// data exception (SQLSTATE class 22: a NUL byte in text, a value out of
/// range) or an integrity constraint (class 23); for SQLite a constraint, a
/// value of the wrong type or too big (primary result codes 19, 20, 18);
/// or a value sqlx could not encode. The same statement fails again however
/// often it is replayed, so the input must be rejected, not retried. `None`
/// for everything else — the connection, the pool, a server shutting down,
/// a broken schema, a disk error — which may pass later (or needs an
/// operator), so the input is kept.
pub fn data_rejection(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Encode(error) => Some(format!("value not encodable: {error}")),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            // SQLite's codes are numbers (extended result codes), not
            // SQLSTATEs: an I/O error such as 2314 must not read as class 23.
            let refused = if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i32>()
                    .is_ok_and(|code| matches!(code & 0xff, 18..=20))
            } else {
                code.starts_with("22") || code.starts_with("23")
            };
            if !refused {
                return None;
            }
            let label = if code.len() == 5 {
                "SQLSTATE"
            } else {
                "SQLite code"
            };
            let mut reason = format!("{} ({label} {code}", db.message());
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                && let Some(column) = pg.column()
            {
                reason.push_str(&format!(", column {column}"));
            }
            if let Some(constraint) = db.constraint() {
                reason.push_str(&format!(", constraint {constraint}"));
            }
            reason.push(')');
            Some(reason)
        }
        _ => None,
    }
}

/// The status for an internal failure: the detail goes to the log, the
/// client gets a stable message that leaks nothing.
pub fn internal(context: &str, error: &dyn std::error::Error) -> Status {
    tracing::error!(%error, context, "internal error");
    Status::internal(format!("internal error: {context}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_refuses_data_by_constraint_and_type_only() {
        use sqlx::Connection as _;
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL CHECK (n > 0)) STRICT",
        )
        .execute(&mut db)
        .await
        .unwrap();
        for bad in [
            "INSERT INTO t VALUES (1, 0)",
            "INSERT INTO t VALUES (1, 'x')",
        ] {
            let error = sqlx::query(bad).execute(&mut db).await.unwrap_err();
            let reason = data_rejection(&error).unwrap();
            assert!(reason.contains("SQLite code"), "{reason}");
        }
        let broken = sqlx::query("INSERT INTO missing VALUES (1)")
            .execute(&mut db)
            .await
            .unwrap_err();
        assert_eq!(data_rejection(&broken), None);
    }

    #[test]
    fn invalid_argument_names_field_value_and_reason() {
        let status = invalid_argument(&[
            FieldViolation::new(
                "device.ip_address",
                "10.0.0.300",
                "not an IPv4 or IPv6 address",
            ),
            FieldViolation::new("device.snmp.port", 70000, "must be 1..=65535"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains(r#"device.ip_address = "10.0.0.300": not an IPv4"#)
        );
        assert!(status.message().contains(r#"device.snmp.port = "70000""#));
        let details = status.get_error_details();
        let bad_request = details.bad_request().expect("bad request details");
        assert_eq!(bad_request.field_violations.len(), 2);
        assert_eq!(bad_request.field_violations[1].field, "device.snmp.port");
    }
}

/// Collects violations while a message is checked.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    pub fn add(
        &mut self,
        field: impl Into<String>,
        value: impl std::fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(FieldViolation::new(field, value, reason));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A required, trimmed, bounded name-like text.
    pub fn name(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, value, "required");
        } else if value.trim() != value {
            self.add(field, value, "must not start or end with white space");
        } else if value.chars().count() > max {
            self.add(field, value, format!("at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(field, value, "must not contain control characters");
        }
    }

    /// An optional bounded free text.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.chars().count() > max {
            self.add(field, value, format!("at most {max} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            self.add(field, value, "must not contain control characters");
        }
    }

    pub fn range(&mut self, field: &str, value: Option<u32>, min: u32, max: u32) {
        if let Some(value) = value
            && !(min..=max).contains(&value)
        {
            self.add(field, value, format!("must be {min}..={max}"));
        }
    }

    /// Tag-like maps: at most 32 entries, keys of [A-Za-z0-9_.-]{1,64},
    /// values of at most 256 characters.
    pub fn labels(&mut self, field: &str, map: &HashMap<String, String>) {
        if map.len() > 32 {
            self.add(field, map.len(), "at most 32 entries");
        }
        for (key, value) in map {
            let key_ok = !key.is_empty()
                && key.len() <= 64
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !key_ok {
                self.add(
                    format!("{field}.key"),
                    key,
                    "1-64 characters of A-Z a-z 0-9 _ . -",
                );
            }
            if value.chars().count() > 256 || value.chars().any(char::is_control) {
                self.add(
                    format!("{field}[{key}]"),
                    value,
                    "at most 256 characters, no control characters",
                );
            }
        }
    }

    pub fn enum_value<E: TryFrom<i32>>(&mut self, field: &str, value: i32) {
        if E::try_from(value).is_err() {
            self.add(field, value, "unknown enum value");
        }
    }
}
