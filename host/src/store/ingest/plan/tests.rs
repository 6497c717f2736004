//! Tables of batches: what each write claims, and what it is answered once the database said
//! which claims won. Row ids are numbered in the order `new_id` hands them out.

use super::*;

const SOURCE: &str = "acme";
const BODY_SCOPE: &str = "acme/body-sha256";

fn row(number: u128) -> Uuid {
    Uuid::from_u128(number)
}

/// Ids 1, 2, 3, … in the order they are asked for.
fn numbered_ids() -> impl FnMut() -> Uuid {
    let mut next = 0;
    move || {
        next += 1;
        row(next)
    }
}

fn raw(request: u128) -> RawRequest {
    RawRequest {
        id: Uuid::from_u128(1000 + request),
        source_name: SOURCE.to_owned(),
        received_at: chrono::DateTime::UNIX_EPOCH,
        method: "POST".to_owned(),
        path: "/webhooks/acme".to_owned(),
        query: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        plugin: "generic@1".to_owned(),
    }
}

fn event(id: &str) -> NormalizedEvent {
    NormalizedEvent {
        id: id.to_owned(),
        source: "test".to_owned(),
        event_type: "order.created".to_owned(),
        subject: None,
        time: "2026-11-25T16:00:00Z".to_owned(),
        data_json: "{}".to_owned(),
        route_keys: Vec::new(),
    }
}

/// A write of events with these ids, each routed to `destinations`, with a body key made of
/// `body` when given.
fn events(request: u128, ids: &[&str], destinations: &[&str], body: Option<u8>) -> IngestWrite {
    IngestWrite::Events {
        raw: raw(request),
        events: ids
            .iter()
            .map(|id| {
                let routed = destinations.iter().map(|name| name.to_string()).collect();
                (event(id), routed)
            })
            .collect(),
        body_sha256: body.map(|byte| [byte; 32]),
    }
}

fn quarantine(request: u128) -> IngestWrite {
    IngestWrite::Quarantine {
        raw: raw(request),
        error: "the plugin trapped".to_owned(),
    }
}

/// The body key of `body`, as `body_keys` names it.
fn body(byte: u8) -> (&'static str, String) {
    (BODY_SCOPE, hex::encode([byte; 32]))
}

#[test]
fn claims_name_the_first_arrival_of_each_key() {
    // (case, writes, row ids per write, first claim of each key)
    type Case = (
        &'static str,
        Vec<IngestWrite>,
        Vec<Vec<u128>>,
        Vec<((&'static str, String), u128)>,
    );
    let table: Vec<Case> = vec![
        (
            "distinct ids claim their own rows",
            vec![events(1, &["a"], &[], None), events(2, &["b"], &[], None)],
            vec![vec![1], vec![2]],
            vec![(id("a"), 1), (id("b"), 2)],
        ),
        (
            "two requests with the same id: the first claims it",
            vec![events(1, &["a"], &[], None), events(2, &["a"], &[], None)],
            vec![vec![1], vec![2]],
            vec![(id("a"), 1)],
        ),
        (
            "a body key points at its write's first event",
            vec![events(1, &["a", "b"], &[], Some(7))],
            vec![vec![1, 2]],
            vec![(id("a"), 1), (id("b"), 2), (body(7), 1)],
        ),
        (
            "a body key and an id key name different first arrivals",
            vec![
                events(1, &["a"], &[], Some(7)),
                events(2, &["b"], &[], Some(7)),
            ],
            vec![vec![1], vec![2]],
            vec![(id("a"), 1), (id("b"), 2), (body(7), 1)],
        ),
        (
            "a quarantine claims nothing",
            vec![quarantine(1), events(2, &["a"], &[], None)],
            vec![vec![], vec![1]],
            vec![(id("a"), 1)],
        ),
    ];
    for (case, writes, row_ids, first_claim) in table {
        let body_keys = body_keys(&writes);
        let planned = plan_claims(&writes, &body_keys, &mut numbered_ids());
        let expected_rows: Vec<Vec<Uuid>> = row_ids
            .iter()
            .map(|ids| ids.iter().map(|&number| row(number)).collect())
            .collect();
        assert_eq!(planned.row_ids, expected_rows, "{case}");
        let expected_claims: HashMap<(&str, &str), Uuid> = first_claim
            .iter()
            .map(|((scope, key), number)| ((*scope, key.as_str()), row(*number)))
            .collect();
        assert_eq!(planned.first_claim, expected_claims, "{case}");
        let sorted = planned.sorted_claims();
        assert!(sorted.windows(2).all(|pair| pair[0] < pair[1]), "{case}");
    }
}

/// What a resolved batch comes to, in row numbers.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    outcomes: Vec<IngestOutcome>,
    /// (request number, status) of every raw row written.
    raw_rows: Vec<(u128, &'static str)>,
    event_rows: Vec<u128>,
    jobs: usize,
    suppressed: Vec<((&'static str, String), i32)>,
    repointed: Vec<((&'static str, String), u128)>,
}

fn accepted(rows: &[u128]) -> IngestOutcome {
    IngestOutcome::Accepted {
        event_ids: rows.iter().map(|&number| row(number)).collect(),
    }
}

fn duplicate(number: u128) -> IngestOutcome {
    IngestOutcome::Duplicate {
        event_id: row(number),
    }
}

/// Plans the claims of `writes`, lets the database answer that `won` were won and that the
/// lost keys in `existing` are stored with those rows, and resolves the batch.
fn resolve(
    writes: &[IngestWrite],
    won: &[(&'static str, String)],
    existing: &[((&'static str, String), u128)],
) -> Resolved {
    let body_keys = body_keys(writes);
    let mut new_id = numbered_ids();
    let planned = plan_claims(writes, &body_keys, &mut new_id);
    let won: HashSet<DedupeKey> = won
        .iter()
        .map(|(scope, key)| (*scope, key.as_str()))
        .collect();
    let existing: HashMap<DedupeKey, Uuid> = existing
        .iter()
        .map(|((scope, key), number)| ((*scope, key.as_str()), row(*number)))
        .collect();
    let claims = Claims::new(planned.first_claim.clone(), won, existing);
    let plan = resolve_batch(writes, &planned.row_ids, &body_keys, claims, &mut new_id)
        .expect("every write has events");
    let number = |id: &Uuid| id.as_u128();
    let owned = |(scope, key): &DedupeKey| {
        (
            if *scope == SOURCE { SOURCE } else { BODY_SCOPE },
            key.to_string(),
        )
    };
    let mut suppressed: Vec<_> = plan
        .suppressed
        .iter()
        .map(|(key, count)| (owned(key), *count))
        .collect();
    suppressed.sort();
    Resolved {
        outcomes: plan.outcomes,
        raw_rows: plan
            .raw_rows
            .iter()
            .map(|(raw, status, _)| (number(&raw.id) - 1000, *status))
            .collect(),
        event_rows: plan
            .event_rows
            .iter()
            .map(|(id, _, _)| number(id))
            .collect(),
        jobs: plan.job_rows.len(),
        suppressed,
        repointed: plan
            .repointed
            .iter()
            .map(|(key, id)| (owned(key), number(id)))
            .collect(),
    }
}

/// (case, writes, keys won, lost keys' stored rows, expected)
type ResolveCase = (
    &'static str,
    Vec<IngestWrite>,
    Vec<(&'static str, String)>,
    Vec<((&'static str, String), u128)>,
    Resolved,
);

fn check_resolutions(table: Vec<ResolveCase>) {
    for (case, writes, won, existing, expected) in table {
        assert_eq!(resolve(&writes, &won, &existing), expected, "{case}");
    }
}

fn id(key: &str) -> (&'static str, String) {
    (SOURCE, key.to_owned())
}

#[test]
fn event_ids_decide_what_is_stored_and_what_is_a_duplicate() {
    check_resolutions(vec![
        (
            "new events are stored with a job per destination",
            vec![
                events(1, &["a"], &["d1", "d2"], None),
                events(2, &["b"], &["d1"], None),
            ],
            vec![id("a"), id("b")],
            vec![],
            Resolved {
                outcomes: vec![accepted(&[1]), accepted(&[2])],
                raw_rows: vec![(1, "accepted"), (2, "accepted")],
                event_rows: vec![1, 2],
                jobs: 3,
                suppressed: vec![],
                repointed: vec![],
            },
        ),
        (
            "two requests with the same id in one batch: the second is the first's duplicate",
            vec![
                events(1, &["a"], &["d1"], None),
                events(2, &["a"], &["d1"], None),
            ],
            vec![id("a")],
            vec![],
            Resolved {
                outcomes: vec![accepted(&[1]), duplicate(1)],
                raw_rows: vec![(1, "accepted")],
                event_rows: vec![1],
                jobs: 1,
                suppressed: vec![(id("a"), 1)],
                repointed: vec![],
            },
        ),
        (
            "an id stored before the batch names the stored event",
            vec![events(1, &["a"], &["d1"], None)],
            vec![],
            vec![(id("a"), 900)],
            Resolved {
                outcomes: vec![duplicate(900)],
                raw_rows: vec![],
                event_rows: vec![],
                jobs: 0,
                suppressed: vec![(id("a"), 1)],
                repointed: vec![],
            },
        ),
    ]);
}

#[test]
fn body_keys_make_a_resend_under_a_new_id_a_duplicate() {
    check_resolutions(vec![
        (
            "a body seen before under a new id: a duplicate, and the new id names the stored event",
            vec![events(1, &["b"], &["d1"], Some(7))],
            vec![id("b")],
            vec![(body(7), 900)],
            Resolved {
                outcomes: vec![duplicate(900)],
                raw_rows: vec![],
                event_rows: vec![],
                jobs: 0,
                suppressed: vec![(body(7), 1)],
                repointed: vec![(id("b"), 900)],
            },
        ),
        (
            "a body key and an id key naming different first arrivals in one batch",
            vec![
                events(1, &["a"], &["d1"], Some(7)),
                events(2, &["b"], &["d1"], Some(7)),
            ],
            vec![id("a"), id("b"), body(7)],
            vec![],
            Resolved {
                outcomes: vec![accepted(&[1]), duplicate(1)],
                raw_rows: vec![(1, "accepted")],
                event_rows: vec![1],
                jobs: 1,
                suppressed: vec![(body(7), 1)],
                repointed: vec![(id("b"), 1)],
            },
        ),
        (
            "an id and a body both stored before, as different events: the body's is named",
            vec![events(1, &["a"], &["d1"], Some(7))],
            vec![],
            vec![(id("a"), 800), (body(7), 900)],
            Resolved {
                outcomes: vec![duplicate(900)],
                raw_rows: vec![],
                event_rows: vec![],
                jobs: 0,
                suppressed: vec![(id("a"), 1), (body(7), 1)],
                repointed: vec![],
            },
        ),
    ]);
}

#[test]
fn partial_duplicates_vanished_keys_and_quarantines_resolve_alike() {
    check_resolutions(vec![
        (
            "a write whose first event is a duplicate stores the rest",
            vec![
                events(1, &["a", "c"], &["d1"], None),
                events(2, &["a", "b"], &["d1"], None),
            ],
            vec![id("a"), id("b"), id("c")],
            vec![],
            Resolved {
                outcomes: vec![accepted(&[1, 2]), accepted(&[4])],
                raw_rows: vec![(1, "accepted"), (2, "accepted")],
                event_rows: vec![1, 2, 4],
                jobs: 3,
                suppressed: vec![(id("a"), 1)],
                repointed: vec![],
            },
        ),
        (
            "a lost key whose row vanished (retention) still answers a duplicate",
            vec![events(1, &["a"], &["d1"], None)],
            vec![],
            vec![],
            Resolved {
                outcomes: vec![duplicate(1)],
                raw_rows: vec![],
                event_rows: vec![],
                jobs: 0,
                suppressed: vec![(id("a"), 1)],
                repointed: vec![],
            },
        ),
        (
            "a quarantine is kept for replay beside stored events",
            vec![quarantine(1), events(2, &["a"], &["d1"], None)],
            vec![id("a")],
            vec![],
            Resolved {
                outcomes: vec![
                    IngestOutcome::Quarantined {
                        request_id: raw(1).id,
                    },
                    accepted(&[1]),
                ],
                raw_rows: vec![(1, "quarantined"), (2, "accepted")],
                event_rows: vec![1],
                jobs: 1,
                suppressed: vec![],
                repointed: vec![],
            },
        ),
    ]);
}

#[test]
fn a_write_without_events_is_refused() {
    let writes = vec![events(1, &[], &["d1"], None)];
    let body_keys = body_keys(&writes);
    let planned = plan_claims(&writes, &body_keys, &mut numbered_ids());
    let claims = Claims::new(planned.first_claim, HashSet::new(), HashMap::new());
    let resolved = resolve_batch(
        &writes,
        &planned.row_ids,
        &body_keys,
        claims,
        &mut numbered_ids(),
    );
    assert!(matches!(resolved, Err(StoreError::Other { .. })));
}

#[test]
fn lost_keys_are_the_claims_not_won() {
    let claims = vec![
        (("s", "a"), row(1)),
        (("s", "b"), row(2)),
        (("s", "c"), row(3)),
    ];
    let won: HashSet<DedupeKey> = [("s", "b")].into_iter().collect();
    assert_eq!(lost_keys(&claims, &won), vec![("s", "a"), ("s", "c")]);
    assert_eq!(lost_keys(&claims, &HashSet::new()).len(), 3);
    let all: HashSet<DedupeKey> = claims.iter().map(|(key, _)| *key).collect();
    assert!(lost_keys(&claims, &all).is_empty());
}
