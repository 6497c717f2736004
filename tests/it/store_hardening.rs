//! Rows PostgreSQL would refuse, against a real host and a real database: one bad request
//! among many good ones fails alone (or is refused with a 4xx before it reaches the store), a
//! receiver's binary answer is recorded once, a finish batch with one bad row still finishes
//! the others, and a body-only signature cannot be replayed under a new delivery id.

use crate::support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;
use wasmhook::ingest::group_commit::{IngestQueue, IngestQueueSettings};
use wasmhook::model::ingest::{IngestOutcome, IngestWrite, RawRequest};
use wasmhook::signature::{self, MacEncoding, Secret, SignatureScheme};
use wasmhook::store::job_state::JobState;
use wasmhook::store::jobs::FinishedAttempt;

use support::app::TestApp;
use support::database::TestDatabase;
use wasmhook_testkit::receiver::{Receiver, Reply};

const STRIPE_SECRET: &str = "whsec_stripe_test_secret";
const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const SHOPIFY_SECRET: &str = "shopify-test-secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const SOURCES: &str = r#"
[[sources]]
name = "acme"
plugin = "generic"
config = '{"signature": {"scheme": "none"}, "type_pointer": "/type"}'

[[sources]]
name = "stripe"
plugin = "stripe"
secrets = ["whsec_stripe_test_secret"]

[[sources]]
name = "github"
plugin = "github"
secrets = ["It's a Secret to Everybody"]

[[sources]]
name = "shopify"
plugin = "shopify"
secrets = ["shopify-test-secret"]

[[sources]]
name = "shopify-repeats"
plugin = "shopify"
secrets = ["shopify-test-secret"]
dedupe_on_body = false

[[sources]]
name = "standard"
plugin = "generic"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
config = '{"type_pointer": "/type"}'
"#;

/// Random letters and digits: they do not compress, so an index entry holding them stays as
/// large as the text (a repeated character would be compressed below the btree limit).
fn incompressible_text(length: usize) -> String {
    (0..length).map(|_| fastrand::alphanumeric()).collect()
}

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}

fn stripe_request(event_id: &str) -> (Vec<(String, String)>, String) {
    let body = format!(
        r#"{{"id":"{event_id}","object":"event","type":"payment_intent.succeeded","created":1680064028,"data":{{"object":{{"id":"pi_1","object":"payment_intent"}}}}}}"#
    );
    let headers = signature::sign(
        &SignatureScheme::Stripe,
        &Secret::new(STRIPE_SECRET),
        body.as_bytes(),
        "",
        chrono::Utc::now().timestamp(),
    )
    .unwrap();
    (headers, body)
}

/// Item 3: an id over the btree limit from a header, one chosen by a plugin, and a row the
/// database refuses for a reason the host cannot foresee (a constraint added here), each sent
/// among 100 concurrent good requests. Only the poisoned request fails; every good one is
/// stored.
#[tokio::test]
async fn one_poisoned_request_of_each_kind_fails_alone_among_a_hundred_good_ones() {
    let app = TestApp::spawn(SOURCES).await;
    sqlx::query(
        "ALTER TABLE raw_requests ADD CONSTRAINT test_poison CHECK (query <> 'poison') NOT VALID",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let long_header_id = [("webhook-id".to_owned(), incompressible_text(6000))];
    let (stripe_headers, stripe_body) = stripe_request(&incompressible_text(6000));

    let good = (0..100).map(|number| {
        app.post(
            "acme",
            &[],
            format!(r#"{{"type":"order.paid","number":{number}}}"#),
        )
    });
    let long_header = app.post(
        "acme",
        &long_header_id,
        r#"{"type":"order.paid","number":"long id"}"#,
    );
    let long_plugin_id = app.post("stripe", &stripe_headers, stripe_body);
    let refused_row = app.post(
        "acme?poison",
        &[],
        r#"{"type":"order.paid","number":"refused"}"#,
    );
    let (good, long_header, long_plugin_id, refused_row) = tokio::join!(
        futures::future::join_all(good),
        long_header,
        long_plugin_id,
        refused_row
    );

    let mut good_ids = Vec::new();
    let mut good_statuses = std::collections::BTreeMap::<u16, usize>::new();
    for response in good {
        let (status, answer) = json(response).await;
        *good_statuses.entry(status.as_u16()).or_default() += 1;
        if let Some(id) = answer["event_id"].as_str() {
            good_ids.push(id.parse::<Uuid>().unwrap());
        }
    }
    assert_eq!(
        good_statuses,
        [(202, 100)].into(),
        "every good request is accepted"
    );

    let (status, answer) = json(long_header).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["code"], "id_too_long", "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("webhook-id"),
        "the answer names the header: {answer}"
    );
    let (status, answer) = json(long_plugin_id).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::ACCEPTED, Some("quarantined")),
        "a plugin's over-long id is an invalid answer, kept for a replay: {answer}"
    );
    assert_eq!(refused_row.status(), StatusCode::SERVICE_UNAVAILABLE);

    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE source_name = 'acme' AND id = ANY($1)",
    )
    .bind(&good_ids)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 100, "every accepted event is stored");
    let counts = app.counts().await;
    assert_eq!(
        (counts.raw_requests, counts.quarantined, counts.events),
        (101, 1, 100),
        "the refused requests stored nothing"
    );
}

fn good_write(number: usize) -> IngestWrite {
    let raw = raw_request(format!(r#"{{"number":{number}}}"#).into_bytes());
    let event = wasmhook::model::events::NormalizedEvent {
        id: format!("event-{number}"),
        source: "urn:test".to_owned(),
        event_type: "test.event".to_owned(),
        subject: None,
        time: "2026-12-01T00:00:00Z".to_owned(),
        data_json: format!(r#"{{"number":{number}}}"#),
        route_keys: vec!["test.event".to_owned()],
    };
    IngestWrite::Events {
        raw,
        events: vec![(event, Vec::new())],
        body_sha256: None,
    }
}

fn raw_request(body: Vec<u8>) -> RawRequest {
    RawRequest {
        id: Uuid::now_v7(),
        source_name: "acme".to_owned(),
        received_at: chrono::Utc::now(),
        method: "POST".to_owned(),
        path: "/webhooks/acme".to_owned(),
        query: String::new(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
        plugin: "generic@0.1.0".to_owned(),
    }
}

/// Item 3: a quarantine whose error text holds a NUL (a plugin's stderr is appended to it)
/// among 100 concurrent writes through the group-commit queue: all are stored, the error with
/// its NUL replaced.
#[tokio::test]
async fn a_nul_in_a_quarantine_error_fails_nothing_in_its_batch() {
    let database = TestDatabase::create().await;
    let pool = database.pool();
    let queue = IngestQueue::start(
        pool.clone(),
        IngestQueueSettings {
            batch_max_requests: 256,
            writers: 2,
            dedupe_window: Duration::from_secs(3600),
        },
    );
    let quarantine = IngestWrite::Quarantine {
        raw: raw_request(b"{}".to_vec()),
        error: "plugin stderr: before\0after".to_owned(),
    };
    let writes = (0..100)
        .map(good_write)
        .chain(std::iter::once(quarantine))
        .map(|write| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.write(write).await })
        })
        .collect::<Vec<_>>();
    let mut accepted = 0;
    let mut quarantined = 0;
    for write in writes {
        match write.await.unwrap() {
            Ok(IngestOutcome::Accepted { .. }) => accepted += 1,
            Ok(IngestOutcome::Quarantined { .. }) => quarantined += 1,
            other => panic!("a write failed: {other:?}"),
        }
    }
    assert_eq!((accepted, quarantined), (100, 1));
    let error: String =
        sqlx::query_scalar("SELECT error FROM raw_requests WHERE status = 'quarantined'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(error, "plugin stderr: before\u{FFFD}after");
}

/// Review item 2: when a batch is refused and, trying its writes one by one, the database turns
/// out to be failing as a whole, the writes after that one fail at once instead of each paying
/// its own attempt. A trigger refuses one request (a row refusal, 23514) and answers the next
/// as a server shutting down would (57P01); a sequence, which no rollback undoes, counts the
/// rows PostgreSQL was asked to insert.
#[tokio::test]
async fn an_outage_while_a_refused_batch_is_split_fails_the_rest_at_once() {
    let database = TestDatabase::create().await;
    let pool = database.pool();
    sqlx::raw_sql(
        "CREATE SEQUENCE insert_attempts;
         CREATE FUNCTION refuse_or_fail() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval('insert_attempts');
             IF NEW.path = '/refused' THEN
                 RAISE EXCEPTION 'refused' USING ERRCODE = '23514';
             ELSIF NEW.path = '/outage' THEN
                 RAISE EXCEPTION 'the server is shutting down' USING ERRCODE = '57P01';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_or_fail BEFORE INSERT ON raw_requests
             FOR EACH ROW EXECUTE FUNCTION refuse_or_fail();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let writes: Vec<IngestWrite> = (0..5)
        .map(|number| {
            let mut write = good_write(number);
            if let IngestWrite::Events { raw, .. } = &mut write {
                raw.path = ["/refused", "/outage"]
                    .get(number)
                    .unwrap_or(&"/good")
                    .to_string();
            }
            write
        })
        .collect();
    let outcomes =
        wasmhook::ingest::group_commit::write_or_split(&pool, &writes, Duration::from_secs(3600))
            .await;
    assert!(
        outcomes.iter().all(Result::is_err),
        "nothing is stored once the database fails: {outcomes:?}"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT last_value FROM insert_attempts")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        attempts, 3,
        "the batch, then the refused write alone, then the write that met the outage"
    );
}

fn delivering_sources(receiver: &Receiver) -> String {
    format!(
        r#"
[[sources]]
name = "acme"
plugin = "generic"
config = '{{"signature": {{"scheme": "none"}}, "type_pointer": "/type"}}'

[[destinations]]
name = "sink"
url = "{url}"
routes = ["*"]
allow_private_networks = true
timeout_seconds = 0.5
retry_schedule_seconds = [0, 0.05, 0.05, 0.05]
"#,
        url = receiver.url("/sink")
    )
}

async fn post_event(app: &TestApp, number: usize) -> Uuid {
    let (status, answer) = app
        .post_webhook(
            "acme",
            &[],
            format!(r#"{{"type":"order.paid","number":{number}}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["event_id"].as_str().unwrap().parse().unwrap()
}

/// Item 4: a receiver answering 200 with a binary body (NUL bytes, not UTF-8) gets the event
/// once; the attempt is recorded and the job is delivered instead of being rescued and sent
/// again forever.
#[tokio::test]
async fn a_binary_answer_is_recorded_once_and_the_job_is_delivered() {
    let png_start = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01".to_vec();
    let receiver = Receiver::start(Vec::new(), Reply::StatusWithBody(200, png_start)).await;
    let app = TestApp::spawn(&delivering_sources(&receiver)).await;
    let event_id = post_event(&app, 1).await;

    let jobs = app
        .wait_for_jobs(event_id, Duration::from_secs(20), |jobs| {
            jobs.first().is_some_and(|job| job.state == "delivered")
        })
        .await;
    let state = jobs.into_iter().next().map(|job| job.state);
    assert_eq!(
        (state.as_deref(), receiver.requests().len()),
        (Some("delivered"), 1),
        "delivered once"
    );
    let attempts: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT a.status_code, a.response_body FROM delivery_attempts a
         JOIN delivery_jobs j ON j.id = a.job_id WHERE j.event_row_id = $1",
    )
    .bind(event_id)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let excerpt = attempts[0].1.as_deref().unwrap();
    assert!(
        excerpt.contains("PNG") && !excerpt.contains('\0'),
        "{excerpt:?}"
    );
}

/// Item 4: a finish batch in which the database refuses one row (a constraint added here)
/// still records the other attempts and moves every job on.
#[tokio::test]
async fn a_finish_batch_with_one_refused_row_still_finishes_the_others() {
    let receiver = Receiver::start(Vec::new(), Reply::Status(200)).await;
    let app = TestApp::spawn_with_roles(
        &delivering_sources(&receiver),
        wasmhook::app::serve::Roles {
            ingest: true,
            worker: false,
        },
    )
    .await;
    for number in 0..3 {
        post_event(&app, number).await;
    }
    let jobs = wasmhook::store::jobs::claim(&app.pool, "sink", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 3);
    sqlx::query(
        "ALTER TABLE delivery_attempts ADD CONSTRAINT test_poison
             CHECK (response_body IS DISTINCT FROM 'poison') NOT VALID",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let finished: Vec<FinishedAttempt> = jobs
        .iter()
        .enumerate()
        .map(|(index, job)| FinishedAttempt {
            job_id: job.job_id,
            attempt: job.attempt,
            started_at: chrono::Utc::now(),
            duration: Duration::from_millis(3),
            status_code: Some(200),
            response_body: Some(if index == 1 { "poison" } else { "ok" }.to_owned()),
            error: None,
            outcome: "delivered",
            next_state: JobState::Delivered,
            next_attempt_at: None,
        })
        .collect();

    let result = wasmhook::store::jobs::finish(&app.pool, &finished).await;
    assert_eq!(result.ok(), Some(3), "every job moved on");
    let bodies: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT j.state, a.response_body FROM delivery_jobs j
         JOIN delivery_attempts a ON a.job_id = j.id ORDER BY a.response_body NULLS LAST",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        bodies,
        vec![
            ("delivered".to_owned(), Some("ok".to_owned())),
            ("delivered".to_owned(), Some("ok".to_owned())),
            ("delivered".to_owned(), None),
        ],
        "the refused row is recorded without its excerpt"
    );
}

/// Review item 8: in a finish batch whose middle row the database refuses whatever it holds,
/// the rows after it still finish; and the finisher's retry of the whole batch (it got an
/// error) records no attempt a second time.
#[tokio::test]
async fn a_retried_finish_after_a_partial_success_records_each_attempt_once() {
    let receiver = Receiver::start(Vec::new(), Reply::Status(200)).await;
    let app = TestApp::spawn_with_roles(
        &delivering_sources(&receiver),
        wasmhook::app::serve::Roles {
            ingest: true,
            worker: false,
        },
    )
    .await;
    for number in 0..3 {
        post_event(&app, number).await;
    }
    let mut jobs = wasmhook::store::jobs::claim(&app.pool, "sink", 10, Duration::from_secs(60))
        .await
        .unwrap();
    jobs.sort_by_key(|job| job.job_id);
    assert_eq!(jobs.len(), 3);
    sqlx::query(&format!(
        "ALTER TABLE delivery_attempts ADD CONSTRAINT test_refuse_job
             CHECK (job_id <> '{}') NOT VALID",
        jobs[1].job_id
    ))
    .execute(&app.pool)
    .await
    .unwrap();
    let finished: Vec<FinishedAttempt> = jobs
        .iter()
        .map(|job| FinishedAttempt {
            job_id: job.job_id,
            attempt: job.attempt,
            started_at: chrono::Utc::now(),
            duration: Duration::from_millis(3),
            status_code: Some(200),
            response_body: Some("ok".to_owned()),
            error: None,
            outcome: "delivered",
            next_state: JobState::Delivered,
            next_attempt_at: None,
        })
        .collect();
    for retry in 0..2 {
        assert!(
            wasmhook::store::jobs::finish(&app.pool, &finished)
                .await
                .is_err(),
            "try {retry}: the refused row is reported"
        );
    }
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT j.id, j.state, count(a.id) FROM delivery_jobs j
         LEFT JOIN delivery_attempts a ON a.job_id = j.id GROUP BY j.id ORDER BY j.id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (jobs[0].job_id, "delivered".to_owned(), 1),
            (jobs[1].job_id, "running".to_owned(), 0),
            (jobs[2].job_id, "delivered".to_owned(), 1),
        ]
    );
}

fn github_headers(body: &[u8], delivery: &str) -> Vec<(String, String)> {
    wasmhook_testkit::signed::github_push_headers(body, delivery, GITHUB_SECRET)
}

/// Item 10: a GitHub signature covers only the body, so whoever saw one delivery can send it
/// again under a new `X-GitHub-Delivery`; the host answers it as a duplicate of the first.
#[tokio::test]
async fn a_body_only_signature_resent_under_a_new_delivery_id_is_a_duplicate() {
    let app = TestApp::spawn(SOURCES).await;
    let body =
        std::fs::read(support::repository_root().join("tests/fixtures/github/push.json")).unwrap();
    let (status, first) = app
        .post_webhook("github", &github_headers(&body, "delivery-1"), body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, resent) = app
        .post_webhook("github", &github_headers(&body, "delivery-2"), body.clone())
        .await;
    assert_eq!(
        (status, resent["status"].as_str(), &resent["event_id"]),
        (StatusCode::OK, Some("duplicate"), &first["event_id"]),
        "{resent}"
    );
    assert_eq!(app.counts().await.events, 1);
}

/// Item 10: Standard Webhooks signs the id and a timestamp with the body, so the same body
/// under a new, signed id is a new event.
#[tokio::test]
async fn the_same_body_under_a_new_standard_webhooks_id_is_a_new_event() {
    let app = TestApp::spawn(SOURCES).await;
    let body = br#"{"type":"order.paid","number":7}"#;
    let mut event_ids = Vec::new();
    for message_id in ["msg-1", "msg-2"] {
        let headers = signature::sign(
            &SignatureScheme::StandardWebhooks,
            &Secret::new(STANDARD_SECRET),
            body,
            message_id,
            chrono::Utc::now().timestamp(),
        )
        .unwrap();
        let (status, answer) = app.post_webhook("standard", &headers, body.to_vec()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        event_ids.push(answer["event_id"].clone());
    }
    assert_ne!(event_ids[0], event_ids[1]);
    assert_eq!(app.counts().await.events, 2);
}

/// Item 10: the keys a replay claimed stand for the first event, so that a later request naming
/// the replay's delivery id is answered with an event that exists; concurrent replays of one
/// body store it once; and a body key older than the window is reclaimed like an event id.
#[tokio::test]
async fn body_keys_name_the_first_event_and_expire_with_the_window() {
    let app = TestApp::spawn(SOURCES).await;
    let body =
        std::fs::read(support::repository_root().join("tests/fixtures/github/push.json")).unwrap();
    let headers: Vec<_> = (0..10)
        .map(|number| github_headers(&body, &format!("concurrent-{number}")))
        .collect();
    let sends = headers
        .iter()
        .map(|headers| app.post("github", headers, body.clone()));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut event_ids = std::collections::BTreeSet::new();
    for response in futures::future::join_all(sends).await {
        let (status, answer) = json(response).await;
        *statuses.entry(status.as_u16()).or_default() += 1;
        event_ids.insert(answer["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        statuses,
        [(200, 9), (202, 1)].into(),
        "one stored, nine duplicates"
    );
    assert_eq!(event_ids.len(), 1, "every answer names the stored event");
    let first = event_ids.pop_first().unwrap();

    let other_body = [body.clone(), b"\n".to_vec()].concat();
    let (status, answer) = app
        .post_webhook(
            "github",
            &github_headers(&other_body, "concurrent-3"),
            other_body.clone(),
        )
        .await;
    assert_eq!(
        (status, answer["event_id"].as_str()),
        (StatusCode::OK, Some(first.as_str())),
        "a delivery id first seen in a replay stands for the replayed event: {answer}"
    );
    let named: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dedupe_keys d JOIN events e ON e.id = d.event_row_id
         WHERE d.source_name LIKE 'github%'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dedupe_keys WHERE source_name LIKE 'github%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (named, keys),
        (12, 12),
        "ten delivery ids and two bodies (the second answered as the first event), each naming a stored event"
    );

    // Past the window (seven days by default) the body is new again.
    sqlx::query("UPDATE dedupe_keys SET created_at = created_at - interval '8 days'")
        .execute(&app.pool)
        .await
        .unwrap();
    let (status, answer) = app
        .post_webhook(
            "github",
            &github_headers(&body, "after-the-window"),
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_ne!(answer["event_id"].as_str(), Some(first.as_str()));
    assert_eq!(app.counts().await.events, 2);
}

/// Whoever had superuser on a cluster of an older host (which let every local user in) could
/// make `pg_hba.conf` a symlink to a file of root's; the host rewrites the file at every start
/// and must replace the link, never write through it.
#[test]
fn a_symlinked_authentication_file_is_replaced_and_its_target_left_alone() {
    use std::os::unix::fs::MetadataExt;
    use wasmhook::store::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
    let directory = tempfile::tempdir().unwrap();
    let options = ClusterOptions {
        throwaway: true,
        ..ClusterOptions::default()
    };
    EmbeddedPostgres::start(directory.path(), options.clone())
        .unwrap()
        .stop()
        .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("a-file-of-the-hosts-user");
    std::fs::write(&target, "must stay as it is\n").unwrap();
    let data_dir = directory.path().join("pg");
    let hba = data_dir.join("pg_hba.conf");
    std::fs::remove_file(&hba).unwrap();
    std::os::unix::fs::symlink(&target, &hba).unwrap();

    let cluster = EmbeddedPostgres::start(directory.path(), options).unwrap();
    let target_text = std::fs::read_to_string(&target).unwrap();
    let hba_metadata = std::fs::symlink_metadata(&hba).unwrap();
    let hba_text = std::fs::read_to_string(&hba).unwrap();
    let server_user = std::fs::metadata(data_dir.join("PG_VERSION"))
        .unwrap()
        .uid();
    cluster.stop().unwrap();

    assert_eq!(
        target_text, "must stay as it is\n",
        "written through the link"
    );
    assert!(
        hba_metadata.file_type().is_file(),
        "pg_hba.conf is a plain file"
    );
    assert!(hba_text.starts_with("# Written by wasmhook"), "{hba_text}");
    assert_eq!(
        (hba_metadata.uid(), hba_metadata.mode() & 0o777),
        (server_user, 0o600),
        "the server's user owns it, privately"
    );
}

/// A Shopify delivery signed as Shopify signs it: an HMAC of the body alone, in base64, so the
/// topic and the webhook id are unsigned.
fn shopify_headers(body: &[u8], topic: &str, webhook_id: &str) -> Vec<(String, String)> {
    let scheme = SignatureScheme::BodyHmac {
        header: "x-shopify-hmac-sha256".into(),
        prefix: String::new(),
        encoding: MacEncoding::Base64,
    };
    let mut headers = signature::sign(&scheme, &Secret::new(SHOPIFY_SECRET), body, "", 0).unwrap();
    headers.push(("x-shopify-topic".into(), topic.into()));
    headers.push(("x-shopify-webhook-id".into(), webhook_id.into()));
    headers.push(("content-type".into(), "application/json".into()));
    headers
}

/// Review item 1: Shopify sends one order's JSON, byte for byte, for `orders/create`,
/// `orders/paid` and `orders/updated`. The body key covers the event type the plugin made of
/// the delivery, so each topic is stored, while the same topic under a new webhook id is still
/// a duplicate; a source with `dedupe_on_body = false` stores every repeat.
#[tokio::test]
async fn one_body_under_two_shopify_topics_is_two_events() {
    let app = TestApp::spawn(SOURCES).await;
    let body = br#"{"id":820982911946154508,"email":"jon@example.com","total_price":"10.00"}"#;
    let app_ref = &app;
    let post = |source: &'static str, topic: &'static str, webhook_id: &'static str| {
        let headers = shopify_headers(body, topic, webhook_id);
        async move { app_ref.post_webhook(source, &headers, body.to_vec()).await }
    };
    let (status, created) = post("shopify", "orders/create", "webhook-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "orders/create: {created}");
    let (status, paid) = post("shopify", "orders/paid", "webhook-2").await;
    assert_eq!(status, StatusCode::ACCEPTED, "orders/paid: {paid}");
    assert_ne!(created["event_id"], paid["event_id"]);
    let (status, resent) = post("shopify", "orders/paid", "webhook-3").await;
    assert_eq!(
        (status, resent["status"].as_str(), &resent["event_id"]),
        (StatusCode::OK, Some("duplicate"), &paid["event_id"]),
        "the same topic and body under a new webhook id: {resent}"
    );
    for webhook_id in ["heartbeat-1", "heartbeat-2"] {
        let (status, answer) = post("shopify-repeats", "orders/paid", webhook_id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{webhook_id}: {answer}");
    }
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT source_name || ' ' || event_type FROM events ORDER BY source_name, event_type",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        [
            "shopify shopify.orders.create",
            "shopify shopify.orders.paid",
            "shopify-repeats shopify.orders.paid",
            "shopify-repeats shopify.orders.paid",
        ]
    );
}

/// Review item 11: resends of one body-only-signed body that were each quarantined while the
/// plugin failed become one event when replayed through the fixed plugin; the later resend is a
/// duplicate, and its quarantine row is handled.
#[tokio::test]
async fn resends_quarantined_while_the_plugin_failed_replay_as_one_event() {
    // An output cap too small for any event quarantines every request.
    let tight = "limits = { max_output_bytes = 16 }";
    let app = TestApp::spawn(&format!(
        "[[sources]]\nname = \"github\"\nplugin = \"github\"\nsecrets = [\"{GITHUB_SECRET}\"]\n{tight}\n"
    ))
    .await;
    let body =
        std::fs::read(support::repository_root().join("tests/fixtures/github/push.json")).unwrap();
    for delivery in ["delivery-1", "delivery-2"] {
        let (status, answer) = app
            .post_webhook("github", &github_headers(&body, delivery), body.clone())
            .await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (StatusCode::ACCEPTED, Some("quarantined")),
            "{delivery}: {answer}"
        );
    }
    let fixed = wasmhook::config::Config::from_toml(&app.config_text().replace(tight, "")).unwrap();
    wasmhook::store::sources::apply_config_sources(
        &app.pool,
        &[(fixed.sources[0].to_record(), vec![])],
    )
    .await
    .unwrap();
    let results = wasmhook::ingest::replay::replay_quarantined(&fixed, &app.pool, None)
        .await
        .unwrap();
    let outcomes: Vec<&str> = results
        .iter()
        .map(|(_, outcome)| match outcome {
            wasmhook::ingest::replay::QuarantineReplay::Stored(IngestOutcome::Accepted {
                ..
            }) => "accepted",
            wasmhook::ingest::replay::QuarantineReplay::Stored(IngestOutcome::Duplicate {
                ..
            }) => "duplicate",
            _ => "other",
        })
        .collect();
    assert_eq!(outcomes, ["accepted", "duplicate"], "{results:?}");
    assert_eq!(app.counts().await.events, 1);
    let still_quarantined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM raw_requests WHERE status = 'quarantined'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(still_quarantined, 0);
}

/// Review item 7: an event id over the bound comes from what the request carried (Stripe's
/// from the body), so it says nothing about the plugin's health: six such requests are each
/// quarantined, yet the source's plugin breaker stays closed and the next good request is
/// handled by the plugin.
#[tokio::test]
async fn over_long_event_ids_do_not_open_the_plugin_breaker() {
    let app = TestApp::spawn(SOURCES).await;
    for attempt in 0..6 {
        let (headers, body) = stripe_request(&"e".repeat(300));
        let (status, answer) = app.post_webhook("stripe", &headers, body).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (StatusCode::ACCEPTED, Some("quarantined")),
            "try {attempt}: {answer}"
        );
    }
    let (headers, body) = stripe_request("evt_good");
    let (status, answer) = app.post_webhook("stripe", &headers, body).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (StatusCode::ACCEPTED, Some("accepted")),
        "{answer}"
    );
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT error FROM raw_requests WHERE status = 'quarantined' ORDER BY received_at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(errors.len(), 6);
    assert!(
        errors.iter().all(|error| error.contains("300 bytes long")),
        "each was run by the plugin: {errors:?}"
    );
}
