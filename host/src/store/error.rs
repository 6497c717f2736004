//! The store's one error type, classified from `sqlx::Error` where the store meets the database,
//! so that callers branch on what happened (an outage, a missing row, a conflict) instead of on
//! driver details. `http_error` turns it into a status in one place.

use std::fmt::Display;

/// Why a store operation failed. Each variant carries the whole message (what the store was
/// doing and the database's cause) for the log; none of it is meant for a client.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is shutting down or refuses connections: the same
    /// operation may succeed once it is back.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A row the operation needed does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A unique or exclusion constraint refused the change.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else. `row_refusal` says whether PostgreSQL refused what the statement carried
    /// (a value it cannot hold, a deadlock), so that the same rows may succeed on their own.
    #[error("the database failed: {message}")]
    Other { message: String, row_refusal: bool },
}

/// Lets `ApiError::internal` take a `StoreError` as it takes an `anyhow::Error`.
impl AsRef<dyn std::error::Error + Send + Sync + 'static> for StoreError {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
}

/// What a `sqlx::Error` stands for, before its message is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Unavailable,
    NotFound,
    Conflict,
    /// PostgreSQL refused the rows (see `is_row_refusal`), without a conflict.
    Refused,
    Other,
}

impl StoreError {
    /// Classifies `error`, met while the store was doing `context`.
    pub fn from_sqlx(context: impl Display, error: &sqlx::Error) -> StoreError {
        let message = format!("{context}: {error}");
        match classify(error) {
            Class::Unavailable => StoreError::Unavailable(message),
            Class::NotFound => StoreError::NotFound(message),
            Class::Conflict => StoreError::Conflict(message),
            Class::Refused => StoreError::Other {
                message,
                row_refusal: true,
            },
            Class::Other => StoreError::Other {
                message,
                row_refusal: false,
            },
        }
    }

    /// A failure that is not the database's (a stored value the store cannot read back).
    pub fn other(message: impl Into<String>) -> StoreError {
        StoreError::Other {
            message: message.into(),
            row_refusal: false,
        }
    }

    /// Whether PostgreSQL refused what a statement carried, or a value could not be encoded:
    /// then the same rows may fail or succeed on their own, and a batch is worth splitting. An
    /// outage is not: trying the writes one by one would only multiply the waiting.
    pub fn is_row_refusal(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict(_)
                | StoreError::Other {
                    row_refusal: true,
                    ..
                }
        )
    }
}

fn classify(error: &sqlx::Error) -> Class {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Class::Unavailable,
        sqlx::Error::RowNotFound => Class::NotFound,
        sqlx::Error::Encode(_) => Class::Refused,
        sqlx::Error::Database(database) => database
            .code()
            .map_or(Class::Other, |code| classify_sqlstate(&code)),
        _ => Class::Other,
    }
}

/// The class of a PostgreSQL error code.
fn classify_sqlstate(sqlstate: &str) -> Class {
    match sqlstate {
        // Another session holds or took the unique value or the exclusion range.
        "23505" | "23P01" => Class::Conflict,
        // The server or the database is going away or not there yet: an administrator's
        // shutdown or termination (57P01), a crash shutdown (57P02), a server starting up
        // (57P03), too many connections (53300), and a database that does not accept
        // connections now (55000, `ALLOW_CONNECTIONS false`, as while it is being dropped).
        "57P01" | "57P02" | "57P03" | "53300" | "55000" => Class::Unavailable,
        // Class 08: the connection itself failed.
        code if code.starts_with("08") => Class::Unavailable,
        code if is_row_refusal(code) => Class::Refused,
        _ => Class::Other,
    }
}

/// SQLSTATE classes of a refusal tied to the rows: data exceptions (22, such as a NUL in text
/// or a time out of range), integrity constraints (23), a rollback for a conflict with another
/// transaction (40: deadlock, serialization) and program limits (54, such as the btree row size).
fn is_row_refusal(sqlstate: &str) -> bool {
    ["22", "23", "40", "54"]
        .iter()
        .any(|class| sqlstate.starts_with(class))
}

/// `anyhow`'s `context`, for the store: a `sqlx` result becomes a classified `StoreError` whose
/// message starts with what the store was doing.
pub trait Context<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError>;
    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, sqlx::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::from_sqlx(context, &error))
    }

    fn with_context<C: Display>(self, context: impl FnOnce() -> C) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::from_sqlx(context(), &error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_tied_to_the_rows_split_a_batch() {
        let table = [
            ("22021", true),  // invalid byte sequence (a NUL in text)
            ("22008", true),  // a time out of range
            ("23514", true),  // a check constraint
            ("23505", true),  // a unique violation
            ("40P01", true),  // a deadlock
            ("54000", true),  // an index row over the btree limit
            ("57P01", false), // the server is shutting down
            ("53300", false), // too many connections
            ("08006", false), // the connection failed
            ("42P01", false), // a missing table: every write fails alike
        ];
        for (sqlstate, row_refusal) in table {
            assert_eq!(is_row_refusal(sqlstate), row_refusal, "{sqlstate}");
        }
    }

    #[test]
    fn sqlstates_are_classified() {
        let table = [
            ("23505", Class::Conflict),
            ("23P01", Class::Conflict),
            ("23503", Class::Refused),
            ("22021", Class::Refused),
            ("40001", Class::Refused),
            ("57P01", Class::Unavailable),
            ("57P02", Class::Unavailable),
            ("57P03", Class::Unavailable),
            ("53300", Class::Unavailable),
            ("55000", Class::Unavailable),
            ("08006", Class::Unavailable),
            ("08001", Class::Unavailable),
            ("42P01", Class::Other),
            ("42601", Class::Other),
            ("XX000", Class::Other),
        ];
        for (sqlstate, class) in table {
            assert_eq!(classify_sqlstate(sqlstate), class, "{sqlstate}");
        }
    }

    #[test]
    fn driver_errors_are_classified() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let table = [
            (sqlx::Error::PoolTimedOut, Class::Unavailable),
            (sqlx::Error::PoolClosed, Class::Unavailable),
            (sqlx::Error::Io(refused), Class::Unavailable),
            (sqlx::Error::WorkerCrashed, Class::Unavailable),
            (sqlx::Error::RowNotFound, Class::NotFound),
            (sqlx::Error::Encode("a value".into()), Class::Refused),
            (sqlx::Error::Protocol("odd".into()), Class::Other),
            (sqlx::Error::ColumnNotFound("missing".into()), Class::Other),
        ];
        for (error, class) in table {
            assert_eq!(classify(&error), class, "{error}");
        }
    }

    #[test]
    fn the_message_says_what_the_store_was_doing() {
        let error = StoreError::from_sqlx("listing events", &sqlx::Error::PoolTimedOut);
        assert!(
            matches!(&error, StoreError::Unavailable(message) if message.starts_with("listing events: "))
        );
        assert!(!error.is_row_refusal());
        let refused = StoreError::from_sqlx("storing", &sqlx::Error::Encode("x".into()));
        assert!(refused.is_row_refusal());
    }
}
