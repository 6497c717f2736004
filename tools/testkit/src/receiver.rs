//! A scripted HTTP receiver on 127.0.0.1: answers each request from a script (then a default),
//! and records headers, bodies, arrival times and the most requests it ever had in flight; or,
//! for the load generator, hands each body to an observer instead of keeping it, so that a long
//! run neither copies nor holds every delivery.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    StatusWithRetryAfter(u16, String),
    /// Waits this long, then answers 200.
    Hang(Duration),
    /// Drops the connection without answering.
    Close,
    /// Answers this status with these body bytes (binary bodies such as a PNG or protobuf).
    StatusWithBody(u16, Vec<u8>),
}

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub arrived_at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Called with each request's body and arrival time, in place of recording the request.
pub type Observer = Box<dyn Fn(&[u8], Instant) + Send + Sync>;

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Reply>,
    default_reply: Option<Reply>,
    requests: Vec<Recorded>,
    in_flight: usize,
    max_in_flight: usize,
    observer: Option<Observer>,
}

#[derive(Clone)]
pub struct Receiver {
    pub address: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    /// Starts a receiver that answers `script` in order, then `default_reply` forever.
    pub async fn start(script: Vec<Reply>, default_reply: Reply) -> Receiver {
        Self::start_at("127.0.0.1:0", script, default_reply).await
    }

    /// Like `start`, on a given address (a port a destination already points at).
    pub async fn start_at(address: &str, script: Vec<Reply>, default_reply: Reply) -> Receiver {
        Self::listen(
            address,
            ReceiverState {
                script: script.into(),
                default_reply: Some(default_reply),
                ..ReceiverState::default()
            },
        )
        .await
    }

    /// A receiver that answers `reply` to everything and passes each body to `observer` instead
    /// of recording it ([`Receiver::requests`] stays empty).
    pub async fn start_observed(reply: Reply, observer: Observer) -> Receiver {
        Self::listen(
            "127.0.0.1:0",
            ReceiverState {
                default_reply: Some(reply),
                observer: Some(observer),
                ..ReceiverState::default()
            },
        )
        .await
    }

    async fn listen(address: &str, state: ReceiverState) -> Receiver {
        let state = Arc::new(Mutex::new(state));
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { address, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Replaces what the receiver answers from now on.
    pub fn answer_from_now_on(&self, reply: Reply) {
        let mut state = self.state.lock().unwrap();
        state.script.clear();
        state.default_reply = Some(reply);
    }

    /// Waits (at most `limit`) until at least `count` requests arrived.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.requests().len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.requests()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut state = state.lock().unwrap();
        if let Some(observer) = &state.observer {
            observer(&body, Instant::now());
        } else {
            state.requests.push(Recorded {
                path: uri.path().to_owned(),
                headers: headers
                    .iter()
                    .map(|(name, value)| {
                        (
                            name.as_str().to_owned(),
                            value.to_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect(),
                body: body.to_vec(),
                arrived_at: Instant::now(),
            });
        }
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        let default_reply = state.default_reply.clone().unwrap();
        state.script.pop_front().unwrap_or(default_reply)
    };
    let response = match reply {
        Reply::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        Reply::StatusWithRetryAfter(status, retry_after) => (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", retry_after)],
        )
            .into_response(),
        Reply::StatusWithBody(status, body) => {
            (StatusCode::from_u16(status).unwrap(), body).into_response()
        }
        Reply::Hang(duration) => {
            tokio::time::sleep(duration).await;
            StatusCode::OK.into_response()
        }
        Reply::Close => {
            state.lock().unwrap().in_flight -= 1;
            // Unwinding out of the connection task drops the connection without an answer;
            // `resume_unwind` skips the panic hook, so nothing is printed.
            std::panic::resume_unwind(Box::new("closing the connection on purpose"));
        }
    };
    state.lock().unwrap().in_flight -= 1;
    response
}
