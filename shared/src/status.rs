//! Error → `tonic::Status` helpers shared by every service adapter: precise
//! `INVALID_ARGUMENT`s with field violations (the `google.rpc.BadRequest`
//! standard form), and one classification of database errors that each
//! service maps onto its own error enum.

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

/// The status for an internal failure: the detail goes to the log, the
/// client gets a stable message that leaks nothing.
pub fn internal(context: &str, error: &dyn std::error::Error) -> Status {
    tracing::error!(%error, context, "internal error");
    Status::internal(format!("internal error: {context}"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
