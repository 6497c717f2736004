//! A job's next state after an attempt: delivered, retrying at a given time, failed (and its
//! destination paused on 410 Gone) or dead. Pure: the caller passes when the attempt started
//! and the jitter sample, so the whole decision is tested without a database or a clock.

use chrono::{DateTime, Utc};

use crate::delivery::retry::{AttemptOutcome, NextStep, next_step};
use crate::model::destination::RetryPolicy;
use crate::store::job_state::JobState;

/// Where a job goes after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextState {
    pub state: JobState,
    /// When the next attempt is due, for a job that retries.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The receiver answered 410 Gone: its destination is paused until an operator resumes it.
    pub pause_destination: bool,
}

/// The job's next state after an attempt that started at `started_at` with `outcome`, its
/// `attempts_made` counted from the last replay. `jitter` is a sample in [-1, 1] (see
/// `next_step`).
pub fn next_state(
    outcome: &AttemptOutcome,
    policy: &RetryPolicy,
    attempts_made: u32,
    started_at: DateTime<Utc>,
    jitter: f64,
) -> NextState {
    let finished = |state| NextState {
        state,
        next_attempt_at: None,
        pause_destination: false,
    };
    match outcome {
        AttemptOutcome::Delivered => finished(JobState::Delivered),
        AttemptOutcome::Failed => finished(JobState::Failed),
        AttemptOutcome::Gone => NextState {
            pause_destination: true,
            ..finished(JobState::Failed)
        },
        AttemptOutcome::Retryable {
            retry_after,
            throttled,
        } => match next_step(policy, attempts_made, *retry_after, *throttled, jitter) {
            NextStep::RetryIn(delay) => NextState {
                state: JobState::Retrying,
                next_attempt_at: Some(
                    started_at + chrono::Duration::from_std(delay).unwrap_or_default(),
                ),
                pause_destination: false,
            },
            NextStep::Dead => finished(JobState::Dead),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::test_support::{now, policy};

    #[test]
    fn an_attempt_moves_its_job_to_the_state_its_outcome_and_schedule_decide() {
        let seconds = Duration::from_secs;
        let policy = policy();
        let retryable = |retry_after, throttled| AttemptOutcome::Retryable {
            retry_after,
            throttled,
        };
        let (plain, throttled) = (retryable(None, false), retryable(None, true));
        let finished = |state| (state, None, false);
        let retry_at = |offset| {
            let at = now() + chrono::Duration::seconds(offset);
            (JobState::Retrying, Some(at), false)
        };
        // (outcome, attempts made, jitter, (state, next attempt at, pause the destination))
        let table = [
            (
                AttemptOutcome::Delivered,
                1,
                0.0,
                finished(JobState::Delivered),
            ),
            (
                AttemptOutcome::Delivered,
                9,
                0.0,
                finished(JobState::Delivered),
            ),
            (AttemptOutcome::Failed, 1, 0.0, finished(JobState::Failed)),
            (AttemptOutcome::Gone, 1, 0.0, (JobState::Failed, None, true)),
            (plain.clone(), 1, 0.0, retry_at(5)),
            (plain.clone(), 1, 1.0, retry_at(6)),
            (plain.clone(), 2, 0.0, retry_at(300)),
            (throttled.clone(), 1, 0.0, retry_at(60)),
            (retryable(Some(seconds(8)), false), 1, 0.0, retry_at(8)),
            (plain, 3, 0.0, finished(JobState::Dead)),
            (throttled, 7, 0.0, finished(JobState::Dead)),
        ];
        for (outcome, attempts, jitter, (state, next_attempt_at, pause_destination)) in table {
            assert_eq!(
                next_state(&outcome, &policy, attempts, now(), jitter),
                NextState {
                    state,
                    next_attempt_at,
                    pause_destination
                },
                "{outcome:?} after {attempts} attempts, jitter {jitter}"
            );
        }
    }
}
