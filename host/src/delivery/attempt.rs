//! One delivery attempt over HTTP: the signed CloudEvents request, the SSRF guard, a capped
//! read of the response, and the outcome as a value.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::delivery::retry::{self, AttemptOutcome};
use crate::model::destination::Destination;
use crate::signature;

/// Response bytes kept in the attempt record.
const RESPONSE_BODY_KEPT_BYTES: usize = 4096;
/// Response bytes read at most (the rest is dropped with the connection).
const RESPONSE_BODY_READ_BYTES: usize = 64 << 10;

/// What one attempt did, for the attempt record and the job's next state.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub outcome: AttemptOutcome,
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub duration: Duration,
}

/// Why the SSRF guard refused a destination; recognized in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
#[error("refused: {0}")]
struct DestinationRefused(String);

/// Whether delivering to this address could reach something that is not the public internet.
pub fn is_private_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..=127).contains(&b))
                || (a == 198 && (18..=19).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_address(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address inside: judge
            // that address.
            let embedded = |high: u16, low: u16| {
                is_private_address(IpAddr::V4(std::net::Ipv4Addr::new(
                    (high >> 8) as u8,
                    high as u8,
                    (low >> 8) as u8,
                    low as u8,
                )))
            };
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return embedded(segments[6], segments[7]);
            }
            if segments[0] == 0x2002 {
                return embedded(segments[1], segments[2]);
            }
            let first = segments[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || is_special_purpose_ipv6(&segments)
        }
    }
}

/// IPv6 ranges that are not the public internet and are not judged by an IPv4 address inside
/// them: IPv4-compatible (`::/96`, deprecated; it holds `::` and `::1`), IPv4-translated
/// (`::ffff:0:0:0/96`, SIIT), local-use NAT64 (`64:ff9b:1::/48`, translated by the operator's own
/// gateway to anything), site-local (`fec0::/10`, deprecated), discard-only (`100::/64`),
/// Teredo (`2001::/32`, a tunnel whose relay reaches an IPv4 address hidden in the address) and
/// documentation (`2001:db8::/32`). IPv4-mapped `::ffff:0:0/96` is judged by its IPv4 address.
fn is_special_purpose_ipv6(segments: &[u16; 8]) -> bool {
    segments[..6] == [0, 0, 0, 0, 0, 0]
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]
        || segments[..3] == [0x64, 0xff9b, 1]
        || (segments[0] & 0xffc0) == 0xfec0
        || segments[..4] == [0x100, 0, 0, 0]
        || segments[..2] == [0x2001, 0]
        || segments[..2] == [0x2001, 0xdb8]
}

/// Resolves names and keeps only the addresses the destination may reach. The connection is
/// made to an address this resolver returned, so the check cannot be bypassed by a second
/// lookup (DNS rebinding).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| !is_private_address(address.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(Box::new(DestinationRefused(format!(
                    "{host} resolves only to loopback, private, link-local, multicast or unspecified addresses"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends attempts, keeping one HTTP client (and its keep-alive connections) per destination.
#[derive(Default)]
pub struct Deliverer {
    clients: Mutex<HashMap<(String, bool, usize), reqwest::Client>>,
    /// The only ports a destination URL may name (`delivery.allowed_ports`); empty: any port.
    allowed_ports: Vec<u16>,
}

/// The settings a destination's HTTP client is built from; a change builds a new client.
fn client_key(destination: &Destination) -> (String, bool, usize) {
    (
        destination.name.clone(),
        destination.settings.allow_private_networks,
        destination.settings.max_concurrency(),
    )
}

impl Deliverer {
    /// A deliverer that refuses destination URLs naming a port outside `allowed_ports`
    /// (empty: any port).
    pub fn new(allowed_ports: Vec<u16>) -> Deliverer {
        Deliverer {
            allowed_ports,
            ..Deliverer::default()
        }
    }

    /// Drops the clients of destinations that are gone or whose settings changed.
    pub fn retain_clients(&self, destinations: &[Destination]) {
        let current: std::collections::HashSet<_> = destinations.iter().map(client_key).collect();
        self.clients
            .lock()
            .expect("client map lock poisoned")
            .retain(|key, _| current.contains(key));
    }

    fn client(&self, destination: &Destination) -> reqwest::Client {
        let key = client_key(destination);
        let mut clients = self.clients.lock().expect("client map lock poisoned");
        clients
            .entry(key)
            .or_insert_with(|| {
                let mut builder = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .user_agent(concat!("wasmhook/", env!("CARGO_PKG_VERSION")))
                    .pool_max_idle_per_host(destination.settings.max_concurrency())
                    .pool_idle_timeout(Duration::from_secs(90));
                if !destination.settings.allow_private_networks {
                    // A proxy would resolve the destination itself, past the guard.
                    builder = builder.dns_resolver(Arc::new(GuardedResolver)).no_proxy();
                }
                builder
                    .build()
                    .expect("an HTTP client with these settings builds")
            })
            .clone()
    }

    /// Delivers one event: `webhook_id` is stable across retries of the same delivery.
    pub async fn attempt(
        &self,
        destination: &Destination,
        webhook_id: &str,
        cloudevent_json: &str,
    ) -> AttemptRecord {
        let started = Instant::now();
        let refused = |error| AttemptRecord {
            outcome: AttemptOutcome::Failed,
            status_code: None,
            response_body: None,
            error: Some(error),
            duration: started.elapsed(),
        };
        if let Err(reason) = check_url(destination, &self.allowed_ports) {
            return refused(reason);
        }
        let request = match self.request(destination, webhook_id, cloudevent_json) {
            Ok(request) => request,
            Err(error) => return refused(error),
        };
        match request.send().await {
            Ok(response) => read_response(response, destination, started).await,
            Err(error) => transport_failure(&error, started),
        }
    }

    /// The signed request for one delivery, or why it cannot be signed.
    fn request(
        &self,
        destination: &Destination,
        webhook_id: &str,
        cloudevent_json: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut request = self
            .client(destination)
            .post(&destination.url)
            .timeout(destination.settings.timeout())
            .header("content-type", "application/cloudevents+json");
        for (name, value) in &destination.headers {
            request = request.header(name, value);
        }
        let signed = signature::standard_webhooks::sign_with_all(
            &destination.signing_secrets,
            cloudevent_json.as_bytes(),
            webhook_id,
            Utc::now().timestamp(),
        )
        .map_err(|error| format!("cannot sign: {error}"))?;
        for (name, value) in signed {
            request = request.header(name, value);
        }
        Ok(request.body(cloudevent_json.to_owned()))
    }
}

/// Reads (the start of) the receiver's answer and classifies it.
async fn read_response(
    mut response: reqwest::Response,
    destination: &Destination,
    started: Instant,
) -> AttemptRecord {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    let mut read_error = None;
    while body.len() < RESPONSE_BODY_READ_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(error) => {
                read_error = Some(error);
                break;
            }
        }
    }
    body.truncate(RESPONSE_BODY_KEPT_BYTES);
    let outcome = match read_error {
        // The receiver answered but did not finish its body in time; a 2xx status still means
        // it took the event.
        Some(error) if error.is_timeout() && !(200..300).contains(&status) => {
            AttemptOutcome::Retryable {
                retry_after: None,
                throttled: true,
            }
        }
        _ => retry::classify_status(
            status,
            retry_after.as_deref(),
            destination.settings.retry_client_errors,
            Utc::now(),
        ),
    };
    AttemptRecord {
        outcome,
        status_code: Some(status),
        response_body: Some(String::from_utf8_lossy(&body).into_owned()),
        error: None,
        duration: started.elapsed(),
    }
}

/// No answer: refused by the SSRF guard (failed), or a transport error (retried).
fn transport_failure(error: &reqwest::Error, started: Instant) -> AttemptRecord {
    let refused = error_chain_refusal(error);
    let outcome = if refused.is_some() {
        AttemptOutcome::Failed
    } else {
        AttemptOutcome::Retryable {
            retry_after: None,
            throttled: error.is_timeout(),
        }
    };
    AttemptRecord {
        outcome,
        status_code: None,
        response_body: None,
        error: Some(refused.unwrap_or_else(|| describe_transport_error(error))),
        duration: started.elapsed(),
    }
}

fn error_chain_refusal(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refused) = current.downcast_ref::<DestinationRefused>() {
            return Some(refused.to_string());
        }
        source = current.source();
    }
    None
}

fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        detail = current.to_string();
        source = current.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Checks the scheme, the port against `allowed_ports` (empty: any), and the host when it is
/// an IP literal (those skip the resolver).
fn check_url(destination: &Destination, allowed_ports: &[u16]) -> Result<(), String> {
    let url = reqwest::Url::parse(&destination.url).map_err(|error| format!("refused: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "refused: the scheme {:?} is not http or https",
            url.scheme()
        ));
    }
    if let Some(port) = url.port_or_known_default()
        && !allowed_ports.is_empty()
        && !allowed_ports.contains(&port)
    {
        return Err(format!(
            "refused: port {port} is not in delivery.allowed_ports {allowed_ports:?}"
        ));
    }
    if destination.settings.allow_private_networks {
        return Ok(());
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    match literal {
        Some(address) if is_private_address(address) => Err(format!(
            "refused: {address} is a loopback, private, link-local, multicast or unspecified address (set allow_private_networks to deliver there)"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::destination::DestinationSettings;

    #[test]
    fn private_addresses_are_recognized() {
        let table = [
            ("127.0.0.1", true),
            ("10.0.0.1", true),
            ("172.16.5.4", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("0.0.0.0", true),
            ("224.0.0.1", true),
            ("100.64.0.1", true),
            ("::1", true),
            ("::", true),
            ("fe80::1", true),
            ("fd00::1", true),
            ("::ffff:127.0.0.1", true),
            ("64:ff9b::a00:1", true),
            ("64:ff9b::5db8:d822", false),
            ("2002:7f00:1::", true),
            ("198.18.0.1", true),
            ("192.0.0.8", true),
            ("240.0.0.1", true),
            ("93.184.216.34", false),
            ("8.8.8.8", false),
            ("2606:4700::1111", false),
            ("::7f00:1", true),
            ("::808:808", true),
            ("::ffff:0:a00:1", true),
            ("::ffff:0:808:808", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b:1::808:808", true),
            ("64:ff9b:1:ffff::1", true),
            ("64:ff9b:2::808:808", false),
            ("fec0::1", true),
            ("feff:ffff::1", true),
            ("ff02::1", true),
            ("100::1", true),
            ("100:0:0:1::1", false),
            ("2001:db8::1", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:1::1", false),
            ("2001:4860:4860::8888", false),
        ];
        for (address, private) in table {
            let parsed: IpAddr = address.parse().unwrap();
            assert_eq!(is_private_address(parsed), private, "{address}");
        }
    }

    fn destination_at(url: &str) -> Destination {
        Destination {
            name: "receiver".into(),
            url: url.into(),
            routes: Vec::new(),
            signing_secrets: Vec::new(),
            headers: Vec::new(),
            settings: DestinationSettings {
                timeout_seconds: 1.0,
                retry_schedule_seconds: Vec::new(),
                throttle_min_delay_seconds: 0.0,
                max_concurrency: 1,
                rate_limit_per_second: None,
                paused: false,
                allow_private_networks: false,
                retry_client_errors: false,
                breaker_failure_threshold: 1,
                breaker_cooldown_seconds: 0.0,
            },
        }
    }

    #[test]
    fn destination_ports_outside_the_allow_list_are_refused() {
        let table: [(&str, &[u16], bool); 7] = [
            ("https://example.com/hook", &[], true),
            ("https://example.com:6379/hook", &[], true),
            ("https://example.com/hook", &[443], true),
            ("http://example.com/hook", &[443], false),
            ("http://example.com:8080/hook", &[80, 8080], true),
            ("https://example.com:6379/hook", &[443, 8443], false),
            ("https://[fec0::1]/hook", &[443], false),
        ];
        for (url, allowed_ports, allowed) in table {
            assert_eq!(
                check_url(&destination_at(url), allowed_ports).is_ok(),
                allowed,
                "{url} with {allowed_ports:?}"
            );
        }
    }
}
