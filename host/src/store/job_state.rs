//! The six states of a delivery job (`delivery_jobs.state`, a text column checked against this
//! list by the first migration), as one enum that reads and writes that column.
//!
//! ```text
//!    new job
//!       │
//!       ▼
//!      due ◄──────────── replay ◄──────────── delivered, failed, dead
//!     │   ▲                                              ▲
//!claim│   │released at attempt 1                         │finish: 2xx, refused, spent
//!     ▼   │                                              │
//!    running ────────────────────────────────────────────┘
//!     │   ▲
//!     │   │claim        (finish: retry later; lease expired; released after attempt 1)
//!     ▼   │
//!    retrying
//! ```
//!
//! - `due` → `running`, `retrying` → `running`: a worker claims the job under a lease once
//!   `next_attempt_at` has passed.
//! - `running` → `delivered` (2xx), `failed` (refused for good: a 4xx, 410 Gone), `dead` (the
//!   retry schedule is spent) or `retrying` (retryable, attempts left): the attempt's finish.
//! - `running` → `retrying`: the lease expired (the worker died) and the rescue put it back.
//! - `running` → `due` or `retrying`: released unfinished at shutdown, its attempt not counted.
//! - `delivered`, `failed`, `dead` → `due`: a replay, with the retry schedule started over.
//!
//! `delivered`, `failed` and `dead` are finished (`finished_at` set) until a replay; retention
//! deletes a request only when none of its jobs is `due`, `running` or `retrying`.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// New, or made due again by a replay: waiting for its first attempt.
    Due,
    /// Claimed by a worker, under a lease.
    Running,
    /// An attempt failed in a way worth retrying; due again at `next_attempt_at`.
    Retrying,
    Delivered,
    /// The destination refused it for good; kept for replay.
    Failed,
    /// Every attempt of the schedule was spent; kept for replay.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Due,
        JobState::Running,
        JobState::Retrying,
        JobState::Delivered,
        JobState::Failed,
        JobState::Dead,
    ];

    /// The value of the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Due => "due",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Delivered => "delivered",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// The state a `state` column value names.
    pub fn from_column(value: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == value)
    }
}

// The column is plain `text`, so the enum is encoded and decoded as text is: a derived
// `sqlx::Type` with `type_name = "text"` would look the type's OID up by name on every new
// connection instead of using text's built-in one.
impl Type<Postgres> for JobState {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl PgHasArrayType for JobState {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }

    fn array_compatible(ty: &PgTypeInfo) -> bool {
        <&str as PgHasArrayType>::array_compatible(ty)
    }
}

impl Encode<'_, Postgres> for JobState {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode_by_ref(&self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for JobState {
    fn decode(value: PgValueRef<'r>) -> Result<JobState, BoxDynError> {
        let text = <&str as Decode<Postgres>>::decode(value)?;
        JobState::from_column(text).ok_or_else(|| format!("unknown job state {text:?}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_are_the_ones_the_migration_allows() {
        let migration = include_str!("../../../migrations/0001_ingest.sql");
        let check = migration
            .split("CHECK (state IN (")
            .nth(1)
            .and_then(|rest| rest.split("))").next())
            .expect("the migration checks the job states");
        let allowed: Vec<&str> = check
            .split(',')
            .map(|name| name.trim().trim_matches('\''))
            .collect();
        let ours: Vec<&str> = JobState::ALL.iter().map(|state| state.as_str()).collect();
        assert_eq!(ours, allowed);
    }

    #[test]
    fn column_values_round_trip() {
        for state in JobState::ALL {
            assert_eq!(JobState::from_column(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.as_str())
            );
        }
        assert_eq!(JobState::from_column("lost"), None);
        assert_eq!(JobState::from_column("Due"), None);
    }
}
