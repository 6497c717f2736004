//! The pure half of `write_batch`: which write claims each dedupe key first, and, once the
//! database said which claims won, which writes are stored, which are duplicates (and of what)
//! and which rows the transaction writes. No I/O; row ids come from the caller's `new_id`, so
//! the tables below can name them.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::model::events::NormalizedEvent;
use crate::model::ingest::{IngestOutcome, IngestWrite, RawRequest};
use crate::store::error::StoreError;

/// A row of `dedupe_keys`: the scope (a source name, or a source's body-key scope) and the key
/// (an event id, or a body's SHA-256 in hex).
pub(super) type DedupeKey<'a> = (&'a str, &'a str);

/// The body key of each write, owned here so that the claims can borrow it.
pub(super) fn body_keys(writes: &[IngestWrite]) -> Vec<Option<(String, String)>> {
    writes
        .iter()
        .map(|write| match write {
            IngestWrite::Events {
                raw,
                body_sha256: Some(digest),
                ..
            } => Some((
                crate::model::dedupe::body_key_scope(&raw.source_name),
                hex::encode(digest),
            )),
            _ => None,
        })
        .collect()
}

/// The row id of every event, and the row each key of the batch is claimed with.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClaimPlan<'a> {
    /// Per write, the row id of each of its events (none for a quarantine).
    pub(super) row_ids: Vec<Vec<Uuid>>,
    /// Per key, the row of its first arrival in the batch.
    pub(super) first_claim: HashMap<DedupeKey<'a>, Uuid>,
}

impl<'a> ClaimPlan<'a> {
    /// The claims in a fixed order, so that concurrent batches lock keys in the same order.
    pub(super) fn sorted_claims(&self) -> Vec<(DedupeKey<'a>, Uuid)> {
        let mut claims: Vec<(DedupeKey<'a>, Uuid)> = self
            .first_claim
            .iter()
            .map(|(&key, &row_id)| (key, row_id))
            .collect();
        claims.sort_unstable();
        claims
    }
}

/// Gives every event a fresh row id and finds the first claim of each key in the batch (later
/// arrivals in the same batch are its duplicates). A body key points at its write's first event.
pub(super) fn plan_claims<'a>(
    writes: &'a [IngestWrite],
    body_keys: &'a [Option<(String, String)>],
    new_id: &mut dyn FnMut() -> Uuid,
) -> ClaimPlan<'a> {
    let mut row_ids: Vec<Vec<Uuid>> = Vec::with_capacity(writes.len());
    let mut first_claim: HashMap<DedupeKey<'a>, Uuid> = HashMap::new();
    for (write, body_key) in writes.iter().zip(body_keys) {
        let ids: Vec<Uuid> = match write {
            IngestWrite::Events { raw, events, .. } => events
                .iter()
                .map(|(event, _)| {
                    let id = new_id();
                    first_claim
                        .entry((raw.source_name.as_str(), event.id.as_str()))
                        .or_insert(id);
                    id
                })
                .collect(),
            IngestWrite::Quarantine { .. } => Vec::new(),
        };
        if let (Some((scope, key)), Some(first_row)) = (body_key, ids.first()) {
            first_claim
                .entry((scope.as_str(), key.as_str()))
                .or_insert(*first_row);
        }
        row_ids.push(ids);
    }
    ClaimPlan {
        row_ids,
        first_claim,
    }
}

/// The keys of `claims` that the database did not let this batch claim (seen within the window).
pub(super) fn lost_keys<'a>(
    claims: &[(DedupeKey<'a>, Uuid)],
    won: &HashSet<DedupeKey<'a>>,
) -> Vec<DedupeKey<'a>> {
    claims
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !won.contains(key))
        .collect()
}

/// What the database said about a batch's keys, and what each key won here stands for.
pub(super) struct Claims<'a> {
    first_claim: HashMap<DedupeKey<'a>, Uuid>,
    won: HashSet<DedupeKey<'a>>,
    /// The stored row of keys that were already claimed within the window.
    existing: HashMap<DedupeKey<'a>, Uuid>,
    /// The event each key won in this batch stands for, filled as writes are resolved in order
    /// (a key is always first claimed by an earlier or the same write).
    targets: HashMap<DedupeKey<'a>, Uuid>,
}

impl<'a> Claims<'a> {
    pub(super) fn new(
        first_claim: HashMap<DedupeKey<'a>, Uuid>,
        won: HashSet<DedupeKey<'a>>,
        existing: HashMap<DedupeKey<'a>, Uuid>,
    ) -> Claims<'a> {
        Claims {
            first_claim,
            won,
            existing,
            targets: HashMap::new(),
        }
    }

    /// Whether `row_id` made the claim of `key` that won.
    fn won_by(&self, key: DedupeKey<'a>, row_id: Uuid) -> bool {
        self.first_claim.get(&key) == Some(&row_id) && self.won.contains(&key)
    }

    /// The event a key stands for when the caller did not win it.
    fn first_arrival(&self, key: DedupeKey<'a>) -> Uuid {
        let known = if self.won.contains(&key) {
            self.targets.get(&key)
        } else {
            self.existing.get(&key)
        };
        // A key deleted between the claim and the read (retention) has no row to name; the
        // write is still a duplicate of something stored within the window.
        known
            .or_else(|| self.first_claim.get(&key))
            .copied()
            .expect("every key of the batch was claimed")
    }
}

/// The rows a batch writes once its claims are known, and what each write gets.
#[derive(Debug, Default)]
pub(super) struct BatchPlan<'a> {
    pub(super) outcomes: Vec<IngestOutcome>,
    /// Each raw request with its status (`accepted` or `quarantined`) and error.
    pub(super) raw_rows: Vec<(&'a RawRequest, &'static str, Option<&'a str>)>,
    pub(super) event_rows: Vec<(Uuid, &'a RawRequest, &'a NormalizedEvent)>,
    /// (job id, event row id, destination name).
    pub(super) job_rows: Vec<(Uuid, Uuid, &'a str)>,
    pub(super) suppressed: HashMap<DedupeKey<'a>, i32>,
    /// Keys won here that must name another event than the row id they were claimed with
    /// (their write turned out a duplicate, or stored a later event first), so that no key
    /// names a row that was never written.
    pub(super) repointed: Vec<(DedupeKey<'a>, Uuid)>,
}

/// Decides, write by write in batch order, what is stored and what each write is answered.
pub(super) fn resolve_batch<'a>(
    writes: &'a [IngestWrite],
    row_ids: &[Vec<Uuid>],
    body_keys: &'a [Option<(String, String)>],
    mut claims: Claims<'a>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Result<BatchPlan<'a>, StoreError> {
    let mut plan = BatchPlan::default();
    for ((write, ids), body_key) in writes.iter().zip(row_ids).zip(body_keys) {
        match write {
            IngestWrite::Quarantine { raw, error } => {
                plan.raw_rows
                    .push((raw, "quarantined", Some(error.as_str())));
                plan.outcomes
                    .push(IngestOutcome::Quarantined { request_id: raw.id });
            }
            IngestWrite::Events { raw, events, .. } => {
                let body_key = body_key
                    .as_ref()
                    .map(|(scope, key)| (scope.as_str(), key.as_str()));
                let write = WriteToResolve {
                    raw,
                    events,
                    ids,
                    body_key,
                };
                let outcome = resolve_events(&mut plan, &mut claims, write, new_id)?;
                plan.outcomes.push(outcome);
            }
        }
    }
    Ok(plan)
}

/// One write of events, with the row ids and body key planned for it.
struct WriteToResolve<'a, 'i> {
    raw: &'a RawRequest,
    events: &'a [(NormalizedEvent, Vec<String>)],
    ids: &'i [Uuid],
    body_key: Option<DedupeKey<'a>>,
}

/// One write's events: each is stored when this write won its id (and its body key, when it
/// has one); a write whose body was seen within the window is a duplicate as a whole.
fn resolve_events<'a>(
    plan: &mut BatchPlan<'a>,
    claims: &mut Claims<'a>,
    write: WriteToResolve<'a, '_>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Result<IngestOutcome, StoreError> {
    let without_events = || StoreError::other("a write without events");
    let WriteToResolve {
        raw,
        events,
        ids,
        body_key,
    } = write;
    let first_row = *ids.first().ok_or_else(without_events)?;
    let body_won = body_key.is_none_or(|key| claims.won_by(key, first_row));
    let mut first_duplicate = None;
    if let Some(key) = body_key
        && !body_won
    {
        *plan.suppressed.entry(key).or_default() += 1;
        first_duplicate = Some(claims.first_arrival(key));
    }
    let mut accepted = Vec::new();
    let mut won_but_not_stored = Vec::new();
    for ((event, destinations), row_id) in events.iter().zip(ids) {
        let key = (raw.source_name.as_str(), event.id.as_str());
        if !claims.won_by(key, *row_id) {
            *plan.suppressed.entry(key).or_default() += 1;
            first_duplicate.get_or_insert_with(|| claims.first_arrival(key));
        } else if body_won {
            accepted.push(*row_id);
            claims.targets.insert(key, *row_id);
            plan.event_rows.push((*row_id, raw, event));
            for destination in destinations {
                plan.job_rows
                    .push((new_id(), *row_id, destination.as_str()));
            }
        } else {
            won_but_not_stored.push(key);
        }
    }
    // The keys this write won but stored no event for (and its body key) stand for the write's
    // first stored event, or for the event it duplicates.
    let stands_for = accepted
        .first()
        .copied()
        .or(first_duplicate)
        .ok_or_else(without_events)?;
    won_but_not_stored.extend(body_key.filter(|_| body_won));
    for key in won_but_not_stored {
        claims.targets.insert(key, stands_for);
        if claims.first_claim.get(&key) != Some(&stands_for) {
            plan.repointed.push((key, stands_for));
        }
    }
    if accepted.is_empty() {
        return Ok(IngestOutcome::Duplicate {
            event_id: stands_for,
        });
    }
    plan.raw_rows.push((raw, "accepted", None));
    Ok(IngestOutcome::Accepted {
        event_ids: accepted,
    })
}

#[cfg(test)]
mod tests;
