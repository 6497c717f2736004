//! Delivery: the worker that claims due jobs and sends them (one attempt, signed per Standard
//! Webhooks, through the SSRF guard), the retry schedule, the per-destination circuit breaker and
//! route matching, and the job's next state after an attempt. The pure parts (retry, breaker,
//! routes, next_state) take `now` and do no IO. May call `store`, `signature` and `model`.

pub mod attempt;
pub mod breaker;
pub mod next_state;
pub mod retry;
pub mod routes;
#[cfg(test)]
mod test_support;
pub mod worker;
