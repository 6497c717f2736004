//! A token bucket for inbound rate limits. Pure: the caller passes `now`.

use std::time::{Duration, Instant};

/// A token bucket holding at most `burst` tokens, refilled at `rate_per_second`.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_second: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate_per_second,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate_per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3, start);
        // (milliseconds after start, expected outcome)
        let table: &[(u64, bool)] = &[
            (0, true),
            (0, true),
            (0, true),
            (0, false),
            (50, false),
            (100, true),
            (100, false),
            (400, true),
            (400, true),
            (400, true),
            (400, false),
            (10_000, true),
        ];
        for (milliseconds, allowed) in table {
            let now = start + Duration::from_millis(*milliseconds);
            assert_eq!(
                bucket.try_take(now).is_ok(),
                *allowed,
                "at {milliseconds} ms"
            );
        }
    }

    #[test]
    fn a_refusal_says_when_to_retry() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 1, start);
        bucket.try_take(start).unwrap();
        let wait = bucket.try_take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
    }
}
