//! A load generator for the fault tests: a few connections post webhooks with unique ids as
//! fast as the host answers, and record what each request got, so a test can compare the ids
//! answered 2xx with the ids a receiver saw.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where to post: a URL and the prefix of the ids sent there.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub id_prefix: String,
}

/// What one request got.
#[derive(Clone, Debug)]
pub enum Outcome {
    Status(u16),
    /// The connection was refused: nothing reached the host.
    Refused,
    /// Any other failure: a reset, a timeout, a truncated answer.
    Broken(String),
}

#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub started: Instant,
    pub finished: Instant,
    pub outcome: Outcome,
}

/// Everything a load run recorded.
#[derive(Default)]
pub struct LoadReport {
    pub records: Vec<Record>,
}

impl LoadReport {
    /// The ids the host answered 2xx: its promise to deliver them.
    pub fn acknowledged(&self) -> BTreeSet<String> {
        self.records
            .iter()
            .filter(|record| matches!(record.outcome, Outcome::Status(200..=299)))
            .map(|record| record.id.clone())
            .collect()
    }

    /// Answers counted by status (`refused` and `broken` for failures without one).
    pub fn summary(&self) -> BTreeMap<String, usize> {
        let mut summary = BTreeMap::new();
        for record in &self.records {
            let key = match &record.outcome {
                Outcome::Status(status) => status.to_string(),
                Outcome::Refused => "refused".to_owned(),
                Outcome::Broken(_) => "broken".to_owned(),
            };
            *summary.entry(key).or_default() += 1;
        }
        summary
    }

    /// The latency of every 2xx answer to ids starting with `prefix`, sorted, in milliseconds.
    pub fn latencies_ms(&self, prefix: &str) -> Vec<f64> {
        let mut latencies: Vec<f64> = self
            .records
            .iter()
            .filter(|record| {
                record.id.starts_with(prefix)
                    && matches!(record.outcome, Outcome::Status(200..=299))
            })
            .map(|record| (record.finished - record.started).as_secs_f64() * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);
        latencies
    }
}

/// The value at quantile `q` of sorted `values`.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "no values");
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    records: Arc<Mutex<Vec<Record>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `connections` workers posting to `targets` in turn, at most `max_requests` in
    /// all, each waiting `pause` between its requests.
    pub fn start(
        targets: Vec<Target>,
        connections: usize,
        max_requests: usize,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let records = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let workers = (0..connections)
            .map(|_| {
                let (stop, sent, records, client, targets) = (
                    stop.clone(),
                    sent.clone(),
                    records.clone(),
                    client.clone(),
                    targets.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let number = sent.fetch_add(1, Ordering::Relaxed);
                        if number >= max_requests {
                            break;
                        }
                        let target = &targets[number % targets.len()];
                        let id = format!("{}-{number}", target.id_prefix);
                        let started = Instant::now();
                        let result = client
                            .post(&target.url)
                            .header("webhook-id", &id)
                            .body(format!(r#"{{"type":"fault.test","n":{number}}}"#))
                            .send()
                            .await;
                        let outcome = match result {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                // The answer counts once its body has arrived whole.
                                match response.bytes().await {
                                    Ok(_) => Outcome::Status(status),
                                    Err(error) => Outcome::Broken(format!("{error:?}")),
                                }
                            }
                            Err(error) if error.is_connect() => Outcome::Refused,
                            Err(error) => Outcome::Broken(format!("{error:?}")),
                        };
                        let refused = matches!(outcome, Outcome::Refused);
                        records.lock().unwrap().push(Record {
                            id,
                            started,
                            finished: Instant::now(),
                            outcome,
                        });
                        // A host that is down is not hammered in a tight loop.
                        let wait = if refused {
                            pause.max(Duration::from_millis(20))
                        } else {
                            pause
                        };
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            sent,
            records,
            workers,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `count` requests have been answered (or ten seconds pass).
    pub async fn wait_for_answers(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.records.lock().unwrap().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for `count` answers (or ten seconds), then stops.
    pub async fn stop_after(self, count: usize) -> LoadReport {
        self.wait_for_answers(count).await;
        self.stop().await
    }

    /// Stops the workers after their current request and returns what they recorded.
    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let records = std::mem::take(&mut *self.records.lock().unwrap());
        LoadReport { records }
    }
}

/// How many times each CloudEvent id reached the receiver.
pub fn delivered_ids(receiver: &wasmhook_testkit::receiver::Receiver) -> HashMap<String, usize> {
    let mut delivered = HashMap::new();
    for request in receiver.requests() {
        if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&request.body)
            && let Some(id) = event["id"].as_str()
        {
            *delivered.entry(id.to_owned()).or_default() += 1;
        }
    }
    delivered
}

/// Waits (at most `limit`) until every acknowledged id reached the receiver; returns the ids
/// still missing and how many deliveries were duplicates.
pub async fn wait_for_every_delivery(
    receiver: &wasmhook_testkit::receiver::Receiver,
    acknowledged: &BTreeSet<String>,
    limit: Duration,
) -> (Vec<String>, usize) {
    let deadline = Instant::now() + limit;
    loop {
        let delivered = delivered_ids(receiver);
        let missing: Vec<String> = acknowledged
            .iter()
            .filter(|id| !delivered.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            let duplicates = delivered.values().map(|count| count - 1).sum();
            return (missing, duplicates);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
