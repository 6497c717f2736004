//! A circuit breaker, pure: the caller passes `now` and reports outcomes. It opens after a
//! number of consecutive failures, refuses work for a cool-down, then lets one probe through;
//! the probe's outcome closes it or opens it again. The delivery worker keeps one per
//! destination (a receiver that is down); ingest keeps one per source (a plugin that fails
//! every call).

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen,
}

/// Whether a unit of work may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The cool-down is over: this one is the probe.
    Probe,
    Refused,
}

/// A change of state worth logging and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Opened { consecutive_failures: u32 },
    Closed,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    state: State,
    consecutive_failures: u32,
    failure_threshold: u32,
    cooldown: Duration,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            state: State::Closed,
            consecutive_failures: 0,
            failure_threshold: failure_threshold.max(1),
            cooldown,
        }
    }

    /// Whether work may start now. After the cool-down exactly one probe is admitted; nothing
    /// else is until its outcome is reported.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Allowed,
            State::Open { until } if now < until => Admission::Refused,
            State::Open { .. } => {
                self.state = State::HalfOpen;
                Admission::Probe
            }
            State::HalfOpen => Admission::Refused,
        }
    }

    /// An admitted probe did not start after all: the next `admit` may probe again.
    pub fn probe_not_started(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open { until: now };
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// A success (or any sign of life) closes the breaker.
    pub fn succeeded(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        let was_closed = self.is_closed();
        self.state = State::Closed;
        (!was_closed).then_some(Transition::Closed)
    }

    /// A failure opens the breaker at the threshold, or again after a failed probe.
    pub fn failed(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let reopen = self.state == State::HalfOpen;
        let trip =
            self.state == State::Closed && self.consecutive_failures >= self.failure_threshold;
        if reopen || trip {
            self.state = State::Open {
                until: now + self.cooldown,
            };
            Some(Transition::Opened {
                consecutive_failures: self.consecutive_failures,
            })
        } else {
            None
        }
    }

    /// Takes new settings (a destination's were edited); the state is kept.
    pub fn configure(&mut self, failure_threshold: u32, cooldown: Duration) {
        self.failure_threshold = failure_threshold.max(1);
        self.cooldown = cooldown;
    }

    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Admit(u64, Admission),
        Fail(u64, Option<Transition>),
        Succeed(Option<Transition>),
        ProbeNotStarted(u64),
    }

    fn opened(failures: u32) -> Option<Transition> {
        Some(Transition::Opened {
            consecutive_failures: failures,
        })
    }

    /// Plays each case's steps on a fresh breaker (threshold 3, cool-down 10 s; times in
    /// seconds from the start) and checks every answer.
    fn play(table: &[(&str, &[Step])]) {
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        for (case, steps) in table {
            let mut breaker = CircuitBreaker::new(3, Duration::from_secs(10));
            for (index, step) in steps.iter().enumerate() {
                match *step {
                    Step::Admit(time, expected) => {
                        assert_eq!(breaker.admit(at(time)), expected, "{case}: step {index}")
                    }
                    Step::Fail(time, expected) => {
                        assert_eq!(breaker.failed(at(time)), expected, "{case}: step {index}")
                    }
                    Step::Succeed(expected) => {
                        assert_eq!(breaker.succeeded(), expected, "{case}: step {index}")
                    }
                    Step::ProbeNotStarted(time) => breaker.probe_not_started(at(time)),
                }
            }
        }
    }

    #[test]
    fn the_breaker_opens_at_the_threshold_and_refuses_during_the_cool_down() {
        use Admission::*;
        use Step::*;
        play(&[
            (
                "failures below the threshold keep it closed; a success resets the count",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Succeed(None),
                    Fail(0, None),
                    Fail(0, None),
                    Admit(0, Allowed),
                ],
            ),
            (
                "the threshold opens it and work is refused during the cool-down",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Fail(1, opened(3)),
                    Admit(5, Refused),
                    Admit(10, Refused),
                ],
            ),
            (
                "after the cool-down one probe is admitted, and only one",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Fail(0, opened(3)),
                    Admit(10, Probe),
                    Admit(10, Refused),
                ],
            ),
        ]);
    }

    #[test]
    fn the_probe_closes_the_breaker_or_opens_it_again() {
        use Admission::*;
        use Step::*;
        play(&[
            (
                "a successful probe closes it",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Fail(0, opened(3)),
                    Admit(10, Probe),
                    Succeed(Some(Transition::Closed)),
                    Admit(10, Allowed),
                ],
            ),
            (
                "a failed probe opens it for another cool-down",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Fail(0, opened(3)),
                    Admit(10, Probe),
                    Fail(10, opened(4)),
                    Admit(15, Refused),
                    Admit(20, Probe),
                ],
            ),
            (
                "a probe that did not start lets the next admission probe",
                &[
                    Fail(0, None),
                    Fail(0, None),
                    Fail(0, opened(3)),
                    Admit(10, Probe),
                    ProbeNotStarted(11),
                    Admit(11, Probe),
                ],
            ),
        ]);
    }
}
