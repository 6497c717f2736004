//! A plugin that misbehaves on purpose, chosen by the source configuration, so the runtime's
//! isolation tests can show that each failure stays inside its own call.

use wasmhook_plugin_sdk::{
    BodyHmac, Event, LogLevel, MacEncoding, Manifest, Outcome, Plugin, Reply, Request,
    SignatureScheme, SourceSettings, export_plugin, log,
};

pub struct Hostile;

export_plugin!(Hostile);

const BEHAVIOURS: &[&str] = &[
    "well-behaved",
    "endless-loop",
    "memory-grab",
    "trap",
    "oversized-output",
    "invalid-output",
    "log-flood",
    "stdout-flood",
    "log-forgery",
    "trap-quoting-body",
    "sign-unsigned",
    "sign-custom",
    "sign-host-checked",
    "verify-many",
];

/// The header the `sign-host-checked` source's requests carry their hex body MAC in.
const SIGNATURE_HEADER: &str = "x-hostile-signature";
/// The header whose hex MAC `sign-*` behaviours hand to `verify-hmac-sha256` before signing.
const VERIFY_HEADER: &str = "x-hostile-verify";

impl Plugin for Hostile {
    fn describe() -> Manifest {
        Manifest {
            name: "hostile".to_owned(),
            version: "0.0.1".to_owned(),
            description: "Misbehaves on purpose, for isolation tests.".to_owned(),
            signature: SignatureScheme::None,
            dedupe_header: None,
            event_types: vec!["hostile.event".to_owned()],
        }
    }

    fn configure(config: &str) -> Result<SourceSettings, String> {
        let signature = match config.trim() {
            "sign-custom" | "verify-many" => SignatureScheme::Custom,
            "sign-host-checked" => SignatureScheme::BodyHmac(BodyHmac {
                header: SIGNATURE_HEADER.to_owned(),
                prefix: String::new(),
                encoding: MacEncoding::Hex,
            }),
            _ => SignatureScheme::None,
        };
        if BEHAVIOURS.contains(&config.trim()) {
            Ok(SourceSettings {
                signature,
                dedupe_header: None,
            })
        } else {
            Err(format!(
                "unknown behaviour {config:?}; use one of {BEHAVIOURS:?}"
            ))
        }
    }

    fn handle(request: Request) -> Outcome {
        match request.config.trim() {
            "endless-loop" => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            "memory-grab" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("this plugin traps on purpose"),
            "trap-quoting-body" => {
                eprintln!("{}", String::from_utf8_lossy(&request.body));
                panic!("this plugin quotes the body on stderr and traps on purpose")
            }
            "oversized-output" => one_event("x".repeat(3 << 19)),
            "invalid-output" => Outcome::Events(vec![Event {
                id: "1".to_owned(),
                source: "hostile".to_owned(),
                event_type: "hostile.event".to_owned(),
                subject: None,
                time: String::new(),
                data: "this is not json".to_owned(),
                route_keys: Vec::new(),
            }]),
            "log-flood" => {
                for line in 0..10_000 {
                    log(LogLevel::Info, &format!("log line {line} of a flood"));
                }
                one_event("\"flooded the log\"".to_owned())
            }
            "stdout-flood" => {
                for line in 0..10_000 {
                    println!("stdout line {line} of a flood");
                }
                one_event("\"flooded stdout\"".to_owned())
            }
            "log-forgery" => {
                let forged = "first line\nINFO wasmhook: a forged line \u{1b}[31mred\u{1b}[0m";
                log(LogLevel::Info, forged);
                println!("{forged}");
                one_event("\"forged the log\"".to_owned())
            }
            "sign-unsigned" | "sign-custom" | "sign-host-checked" => sign_reply(&request),
            "verify-many" => verify_many(&request),
            _ => {
                log(LogLevel::Info, "handling a request politely");
                one_event(format!("{{\"bytes\":{}}}", request.body.len()))
            }
        }
    }
}

fn one_event(data: String) -> Outcome {
    Outcome::Events(vec![Event {
        id: "hostile-1".to_owned(),
        source: "urn:wasmhook:test:hostile".to_owned(),
        event_type: "hostile.event".to_owned(),
        subject: None,
        time: String::new(),
        data,
        route_keys: Vec::new(),
    }])
}

/// Verifies the MAC in `x-hostile-verify` when there is one, then asks the host to sign the
/// body and replies with the MAC in hex, or `refused` when the host would not sign.
fn sign_reply(request: &Request) -> Outcome {
    if let Some(mac) = request.header(VERIFY_HEADER).and_then(decode_hex) {
        let verified = host::verify_hmac_sha256(&request.body, &mac);
        log(
            LogLevel::Info,
            &format!("verify-hmac-sha256 said {verified}"),
        );
    }
    let body = match host::sign_hmac_sha256(&request.body) {
        Some(mac) => mac.iter().map(|byte| format!("{byte:02x}")).collect(),
        None => "refused".to_owned(),
    };
    Outcome::Reply(Reply {
        status: 200,
        headers: Vec::new(),
        body: body.into_bytes(),
    })
}

/// Asks the host to check the MAC in `x-hostile-verify` a hundred times, as a plugin looping
/// over a caller's candidates would, and replies with how many checks said yes.
fn verify_many(request: &Request) -> Outcome {
    let mac = request
        .header(VERIFY_HEADER)
        .and_then(decode_hex)
        .unwrap_or_default();
    let matched = (0..100)
        .filter(|_| host::verify_hmac_sha256(&request.body, &mac))
        .count();
    Outcome::Reply(Reply {
        status: 200,
        headers: Vec::new(),
        body: matched.to_string().into_bytes(),
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

/// The host's MAC functions; natively (a plain `cargo build` of the workspace) there is no
/// host, so nothing verifies and nothing is signed.
mod host {
    #[cfg(target_arch = "wasm32")]
    pub use wasmhook_plugin_sdk::bindings::wasmhook::plugin::host::{
        sign_hmac_sha256, verify_hmac_sha256,
    };

    #[cfg(not(target_arch = "wasm32"))]
    pub fn verify_hmac_sha256(_message: &[u8], _mac: &[u8]) -> bool {
        false
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn sign_hmac_sha256(_message: &[u8]) -> Option<Vec<u8>> {
        None
    }
}
