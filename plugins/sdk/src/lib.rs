//! The Rust side of the wasmhook plugin contract (`wit/plugin.wit`).
//!
//! A Rust plugin implements [`Plugin`] on plain Rust types and calls [`export_plugin!`]. The
//! logic then compiles natively too, so its unit tests and benchmarks run without a host, and
//! the same code becomes a component when built for `wasm32-wasip2`.

use sha2::{Digest, Sha256};

/// Severity of a log line sent through the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// How a MAC is written into a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacEncoding {
    Hex,
    Base64,
}

/// An HMAC-SHA256 over the raw body, carried in one header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyHmac {
    pub header: String,
    pub prefix: String,
    pub encoding: MacEncoding,
}

/// An HMAC-SHA256 over `{version}:{timestamp}:{body}` (Slack, Zoom).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedHmac {
    pub signature_header: String,
    pub timestamp_header: String,
    pub version: String,
}

/// The signature scheme the host checks before calling `handle`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    None,
    BodyHmac(BodyHmac),
    StandardWebhooks,
    Stripe,
    VersionedHmac(VersionedHmac),
    SharedToken(String),
    Custom,
}

/// What a plugin says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub signature: SignatureScheme,
    pub dedupe_header: Option<String>,
    pub event_types: Vec<String>,
}

/// How one source bound to the plugin is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSettings {
    pub signature: SignatureScheme,
    pub dedupe_header: Option<String>,
}

/// One header as received, the name in lower case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// One inbound request, after the host checked its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    pub received_at_unix_ms: i64,
    pub received_at: String,
    pub source_name: String,
    pub config: String,
}

impl Request {
    /// The first value of a header, looked up case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_str())
    }

    /// A POST to `source_name` with the given headers (names lower-cased) and body, received at
    /// the Unix epoch with an empty config: the starting point of a plugin's unit tests.
    pub fn post(source_name: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        Request {
            method: "POST".to_owned(),
            path: format!("/webhooks/{source_name}"),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(name, value)| Header {
                    name: name.to_ascii_lowercase(),
                    value: (*value).to_owned(),
                })
                .collect(),
            body: body.to_vec(),
            received_at_unix_ms: 0,
            received_at: "1970-01-01T00:00:00.000Z".to_owned(),
            source_name: source_name.to_owned(),
            config: String::new(),
        }
    }

    /// The lower-case hex SHA-256 of the body, the dedupe id of platforms that send none.
    pub fn body_sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(&self.body))
    }
}

/// One normalized event (the CloudEvents 1.0 attributes plus route keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: String,
    pub data: String,
    pub route_keys: Vec<String>,
}

/// Why a plugin refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectionKind {
    Malformed,
    Invalid,
    Unauthenticated,
    StaleTimestamp,
    Ignored,
}

/// A refusal with a reason the sender can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub reason: String,
}

/// An immediate answer for handshakes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

/// What `handle` decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Events(Vec<Event>),
    Rejected(Rejection),
    Reply(Reply),
}

/// Why a plugin refuses a request, as a plugin's helper functions return it with `?`.
pub type Refusal = (RejectionKind, String);

impl Outcome {
    /// A rejection with the given kind and reason.
    pub fn reject(kind: RejectionKind, reason: impl Into<String>) -> Outcome {
        Outcome::Rejected(Rejection {
            kind,
            reason: reason.into(),
        })
    }

    /// One event, or the refusal that stopped it.
    pub fn one_event(normalized: Result<Event, Refusal>) -> Outcome {
        Outcome::or_refusal(normalized.map(|event| Outcome::Events(vec![event])))
    }

    /// The outcome, or the refusal that stopped it.
    pub fn or_refusal(outcome: Result<Outcome, Refusal>) -> Outcome {
        outcome.unwrap_or_else(|(kind, reason)| Outcome::reject(kind, reason))
    }
}

/// The settings of a plugin that takes no configuration: an empty string (or `{}`) gives the
/// manifest's scheme and dedupe header; anything else is refused with a message that says so.
pub fn settings_without_configuration(
    config: &str,
    manifest: Manifest,
) -> Result<SourceSettings, String> {
    let config = config.trim();
    if !(config.is_empty() || config == "{}") {
        return Err(format!(
            "the {} plugin takes no configuration; leave `config` empty",
            manifest.name
        ));
    }
    Ok(SourceSettings {
        signature: manifest.signature,
        dedupe_header: manifest.dedupe_header,
    })
}

/// A plugin's logic, on plain Rust types.
pub trait Plugin {
    /// Describes the plugin; called once when the host loads it.
    fn describe() -> Manifest;
    /// Checks one source's configuration and derives its settings.
    fn configure(config: &str) -> Result<SourceSettings, String>;
    /// Handles one request.
    fn handle(request: Request) -> Outcome;
}

/// Sends one log line through the host. Natively (unit tests, benchmarks) there is no host, so
/// the line goes to standard error.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    glue::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
        default_bindings_module: "wasmhook_plugin_sdk::bindings",
    });
}

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod glue;

/// Exports a [`Plugin`] implementation as the component's `handler` interface. Does nothing in
/// native builds, where the plugin is called as plain Rust.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        mod wasmhook_component_export {
            use super::*;
            use $crate::bindings::exports::wasmhook::plugin::handler;
            use $crate::bindings::wasmhook::plugin::types;

            struct Component;

            impl handler::Guest for Component {
                fn describe() -> types::Manifest {
                    $crate::glue::manifest_to_wit(<$plugin as $crate::Plugin>::describe())
                }

                fn configure(config: String) -> Result<types::SourceSettings, String> {
                    <$plugin as $crate::Plugin>::configure(&config)
                        .map($crate::glue::source_settings_to_wit)
                }

                fn handle(request: types::Request) -> types::Outcome {
                    $crate::glue::outcome_to_wit(<$plugin as $crate::Plugin>::handle(
                        $crate::glue::request_from_wit(request),
                    ))
                }
            }

            $crate::bindings::export_bindings!(Component with_types_in $crate::bindings);
        }
    };
}
