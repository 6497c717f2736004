//! A plugin that misbehaves on purpose, chosen by the source configuration, so the runtime's
//! isolation tests can show that each failure stays inside its own call.

use wasmhook_plugin_sdk::{
    Event, LogLevel, Manifest, Outcome, Plugin, Request, SignatureScheme, SourceSettings,
    export_plugin, log,
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
];

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
        if BEHAVIOURS.contains(&config.trim()) {
            Ok(SourceSettings {
                signature: SignatureScheme::None,
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
