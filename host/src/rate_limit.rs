//! Inbound rate limits: a token bucket, a bucket per client address (taken before a request
//! is authenticated) and a throttle of failed admin logins per client address. Pure: the caller
//! passes `now`.
//!
//! The per-address tables are bounded: an attacker with many addresses makes them forget
//! addresses (the ones that are idle first), never grow without bound. IPv6 addresses count per
//! /64, the block one subscriber usually holds, so one host cannot step through its own.

use std::collections::HashMap;
use std::net::IpAddr;
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
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // A tiny configured rate makes this wait longer than a `Duration` holds; it must
            // not panic, since the caller holds the bucket's lock.
            let wait = (1.0 - self.tokens) / self.rate_per_second;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }

    /// Whether the bucket has refilled completely by `now`: then it is the same as a new one.
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.burst);
        self.refilled_at = now;
    }
}

/// The key a client address is counted under: IPv4 as it is (an IPv4-mapped IPv6 address as
/// its IPv4 address), IPv6 by its /64 prefix.
pub fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// How often a full table looks for entries it can forget without losing anything; between
/// those sweeps a full table forgets an arbitrary entry, so that a flood of new addresses costs
/// constant work per request.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A table of per-address state holding at most `capacity` entries.
#[derive(Debug)]
struct BoundedAddressTable<Entry> {
    capacity: usize,
    entries: HashMap<IpAddr, Entry>,
    swept_at: Option<Instant>,
}

impl<Entry> BoundedAddressTable<Entry> {
    fn new(capacity: usize) -> Self {
        BoundedAddressTable {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            swept_at: None,
        }
    }

    /// The entry of `key`, made with `new_entry` when absent; when the table is full, first
    /// drops the entries `forgettable` says carry nothing (at most once a second), else one
    /// arbitrary entry.
    fn entry(
        &mut self,
        key: IpAddr,
        now: Instant,
        new_entry: impl FnOnce() -> Entry,
        mut forgettable: impl FnMut(&mut Entry) -> bool,
    ) -> &mut Entry {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let may_sweep = self
                .swept_at
                .is_none_or(|swept_at| now.saturating_duration_since(swept_at) >= SWEEP_INTERVAL);
            if may_sweep {
                self.swept_at = Some(now);
                self.entries.retain(|_, entry| !forgettable(entry));
            }
            if self.entries.len() >= self.capacity
                && let Some(arbitrary) = self.entries.keys().next().copied()
            {
                self.entries.remove(&arbitrary);
            }
        }
        self.entries.entry(key).or_insert_with(new_entry)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// A token bucket per client address.
#[derive(Debug)]
pub struct AddressBuckets {
    rate_per_second: f64,
    burst: u32,
    table: BoundedAddressTable<TokenBucket>,
}

impl AddressBuckets {
    /// At most `capacity` addresses are tracked at once.
    pub fn new(rate_per_second: f64, burst: u32, capacity: usize) -> AddressBuckets {
        AddressBuckets {
            rate_per_second,
            burst,
            table: BoundedAddressTable::new(capacity),
        }
    }

    /// Takes one token from `address`'s bucket, or says how long until one is available.
    pub fn try_take(&mut self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let (rate_per_second, burst) = (self.rate_per_second, self.burst);
        self.table
            .entry(
                address_key(address),
                now,
                || TokenBucket::new(rate_per_second, burst, now),
                |bucket| bucket.is_full(now),
            )
            .try_take(now)
    }

    /// How many addresses are tracked.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }
}

/// Failed logins of one client address.
#[derive(Debug)]
struct LoginFailures {
    count: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
    /// While blocked, the earliest time the address may try once more.
    next_attempt_at: Instant,
}

/// How often a blocked address may still try: a guesser gets one try a second, and an operator
/// who shares the address (every local process is 127.0.0.1 to a loopback listener) gets in
/// within a second instead of being locked out by whoever keeps guessing.
pub const ATTEMPT_INTERVAL_WHILE_BLOCKED: Duration = Duration::from_secs(1);

/// Throttles guessing: a client address that fails `max_failures` logins, each within `block`
/// of the one before, is blocked for `block`: meanwhile it may try only once every
/// `ATTEMPT_INTERVAL_WHILE_BLOCKED`, and every other request is refused whatever it presents.
#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    block: Duration,
    table: BoundedAddressTable<LoginFailures>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, block: Duration, capacity: usize) -> LoginThrottle {
        LoginThrottle {
            max_failures: max_failures.max(1),
            block,
            table: BoundedAddressTable::new(capacity),
        }
    }

    /// Whether `address` may try to log in now, or how long it must wait.
    pub fn check(&mut self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = address_key(address);
        let Some(failures) = self.table.entries.get_mut(&key) else {
            return Ok(());
        };
        match failures.blocked_until {
            Some(until) if until > now => {
                if failures.next_attempt_at > now {
                    return Err(failures.next_attempt_at - now);
                }
                failures.next_attempt_at = now + ATTEMPT_INTERVAL_WHILE_BLOCKED;
                Ok(())
            }
            Some(_) => {
                self.table.entries.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Counts a failed login of `address`.
    pub fn failed(&mut self, address: IpAddr, now: Instant) {
        let (block, max_failures) = (self.block, self.max_failures);
        let failures = self.table.entry(
            address_key(address),
            now,
            || LoginFailures {
                count: 0,
                last_failure: now,
                blocked_until: None,
                next_attempt_at: now,
            },
            |failures| failures.expired(now, block),
        );
        if now.saturating_duration_since(failures.last_failure) > block {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last_failure = now;
        if failures.count >= max_failures {
            failures.blocked_until = Some(now + block);
            failures.next_attempt_at = now + ATTEMPT_INTERVAL_WHILE_BLOCKED;
        }
    }

    /// A successful login forgets the address's failures.
    pub fn succeeded(&mut self, address: IpAddr) {
        self.table.entries.remove(&address_key(address));
    }
}

impl LoginFailures {
    /// Whether this record no longer affects anything: its block (if any) is over and its
    /// last failure is too old to be counted with the next.
    fn expired(&self, now: Instant, block: Duration) -> bool {
        let block_over = self.blocked_until.is_none_or(|until| until <= now);
        block_over && now.saturating_duration_since(self.last_failure) > block
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
    fn address_buckets_limit_each_address_on_its_own() {
        let start = Instant::now();
        let mut buckets = AddressBuckets::new(1.0, 2, 100);
        let [first, second, mapped_first, six_a, six_b, six_other] = [
            "192.0.2.1",
            "192.0.2.2",
            "::ffff:192.0.2.1",
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff::9",
            "2001:db8:1:3::1",
        ]
        .map(|address| address.parse::<IpAddr>().unwrap());
        // (address, milliseconds after start, allowed)
        let table: &[(IpAddr, u64, bool)] = &[
            (first, 0, true),
            (first, 0, true),
            (first, 0, false),
            (mapped_first, 0, false),
            (second, 0, true),
            (second, 0, true),
            (second, 0, false),
            (first, 1000, true),
            (first, 1000, false),
            (six_a, 0, true),
            (six_b, 0, true),
            (six_a, 0, false),
            (six_other, 0, true),
        ];
        for (address, milliseconds, allowed) in table {
            let now = start + Duration::from_millis(*milliseconds);
            assert_eq!(
                buckets.try_take(*address, now).is_ok(),
                *allowed,
                "{address} at {milliseconds} ms"
            );
        }
    }

    #[test]
    fn address_buckets_never_track_more_than_their_capacity() {
        let start = Instant::now();
        let mut buckets = AddressBuckets::new(1.0, 1, 64);
        for index in 0..10_000u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + index));
            let now = start + Duration::from_millis(u64::from(index));
            assert!(buckets.try_take(address, now).is_ok(), "a new address");
            assert!(buckets.tracked() <= 64, "{} tracked", buckets.tracked());
        }
        // An address that stays busy keeps being limited while others come and go.
        let busy: IpAddr = "192.0.2.7".parse().unwrap();
        let later = start + Duration::from_secs(20);
        assert!(buckets.try_take(busy, later).is_ok());
        assert!(buckets.try_take(busy, later).is_err());
    }

    #[test]
    fn a_rate_too_small_to_wait_for_answers_the_longest_wait_instead_of_panicking() {
        let now = Instant::now();
        for rate in [1e-300, f64::MIN_POSITIVE] {
            let mut bucket = TokenBucket::new(rate, 1, now);
            assert_eq!(bucket.try_take(now), Ok(()), "{rate}");
            assert_eq!(bucket.try_take(now), Err(Duration::MAX), "{rate}");
        }
    }

    #[test]
    fn failed_logins_block_an_address_for_a_while() {
        let start = Instant::now();
        let mut throttle = LoginThrottle::new(3, Duration::from_secs(60), 100);
        let guesser: IpAddr = "198.51.100.1".parse().unwrap();
        let other: IpAddr = "198.51.100.2".parse().unwrap();
        #[derive(Clone, Copy, Debug)]
        enum Step {
            Fail,
            Succeed,
            /// Whether a login may be tried now.
            Check(bool),
        }
        use Step::{Check, Fail, Succeed};
        // (address, seconds after start, step)
        let table: &[(IpAddr, u64, Step)] = &[
            (guesser, 0, Check(true)),
            (guesser, 0, Fail),
            (guesser, 1, Fail),
            (guesser, 1, Check(true)),
            (guesser, 2, Fail),
            (guesser, 2, Check(false)),
            (other, 2, Check(true)),
            // Blocked, it may still try once a second, so whoever shares its address and knows
            // the token is not locked out.
            (guesser, 3, Check(true)),
            (guesser, 3, Check(false)),
            (guesser, 3, Fail),
            (guesser, 3, Check(false)),
            (guesser, 4, Check(true)),
            (guesser, 63, Check(true)),
            // Failures far apart are not counted together.
            (other, 0, Fail),
            (other, 100, Fail),
            (other, 200, Fail),
            (other, 200, Check(true)),
            // A success forgets the failures.
            (other, 201, Fail),
            (other, 202, Succeed),
            (other, 203, Fail),
            (other, 203, Check(true)),
        ];
        for (address, seconds, step) in table {
            let now = start + Duration::from_secs(*seconds);
            match step {
                Fail => throttle.failed(*address, now),
                Succeed => throttle.succeeded(*address),
                Check(allowed) => assert_eq!(
                    throttle.check(*address, now).is_ok(),
                    *allowed,
                    "{address} at {seconds} s"
                ),
            }
        }
    }

    #[test]
    fn a_blocked_address_is_told_how_long_to_wait() {
        let start = Instant::now();
        let mut throttle = LoginThrottle::new(1, Duration::from_secs(300), 10);
        let guesser: IpAddr = "198.51.100.1".parse().unwrap();
        throttle.failed(guesser, start);
        // Until its next try, not until the block ends.
        assert_eq!(
            throttle.check(guesser, start + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
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
