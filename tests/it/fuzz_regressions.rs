//! The fuzz targets' bodies (`wasmhook::fuzzing`, fuzzed by `scripts/fuzz.sh` on nightly) run on
//! stable as ordinary tests: over hand-written seeds, nasty ones included, and over every input
//! that once crashed a target, kept byte for byte in `tests/fixtures/fuzz/<target>/`.
//!
//! To keep a new crash: copy `host/fuzz/artifacts/<target>/crash-*` into
//! `tests/fixtures/fuzz/<target>/`, fix the host, and this test replays it from then on.

use std::path::{Path, PathBuf};

use wasmhook::fuzzing::{
    self, EventInput, HeaderNameInput, IngestInput, ManifestInput, OutcomeInput, SchemeInput,
    SignatureInput, TimeInput,
};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `body` on every input, and names each input that panicked.
fn run_all(target: &str, inputs: Vec<(String, Vec<u8>)>, body: fn(&[u8])) {
    let failures: Vec<String> = inputs
        .into_iter()
        .filter(|(_, input)| std::panic::catch_unwind(|| body(input)).is_err())
        .map(|(name, _)| name)
        .collect();
    assert!(
        failures.is_empty(),
        "target {target} panicked on {failures:?}"
    );
}

fn run_checks<T: std::fmt::Debug + std::panic::RefUnwindSafe>(seeds: &[T], check: fn(&T)) {
    for seed in seeds {
        if std::panic::catch_unwind(|| check(seed)).is_err() {
            panic!("the check panicked on the seed {seed:?}");
        }
    }
}

#[test]
fn every_crash_input_found_so_far_stays_fixed() {
    for (target, body) in fuzzing::TARGETS {
        let directory = repository().join("tests/fixtures/fuzz").join(target);
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        let inputs = entries
            .map(|entry| {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path.display().to_string(), bytes)
            })
            .collect();
        run_all(target, inputs, *body);
    }
}

#[test]
fn every_target_has_a_fuzz_target_file_and_the_other_way_round() {
    let mut files: Vec<String> = std::fs::read_dir(repository().join("host/fuzz/fuzz_targets"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = fuzzing::TARGETS
        .iter()
        .map(|(name, _)| format!("{name}.rs"))
        .collect();
    expected.sort();
    assert_eq!(files, expected);
}

/// Raw fuzzer bytes of every shape: each target decodes what it can and must not panic.
#[test]
fn every_target_survives_raw_byte_seeds() {
    let mut seeds: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("one zero".into(), vec![0]),
        ("all ones".into(), vec![0xff; 4096]),
        ("huge".into(), vec![b'a'; 1 << 20]),
        (
            "non-UTF-8".into(),
            vec![0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1],
        ),
        ("counting".into(), (0..=255).collect()),
        (
            "counting down".into(),
            (0..=255).rev().cycle().take(10_000).collect(),
        ),
        ("stripe-ish".into(), b"t=,v1=".to_vec()),
        ("many v1=".into(), "v1=".repeat(10_000).into_bytes()),
    ];
    // Every byte followed by a body of that byte, so each enum variant the first byte picks
    // gets a body.
    seeds.extend((0..=255u8).map(|byte| (format!("byte {byte}"), vec![byte; 64])));
    for (target, body) in fuzzing::TARGETS {
        run_all(target, seeds.clone(), *body);
    }
}

fn github() -> SchemeInput {
    SchemeInput::BodyHmacHex {
        header: "x-hub-signature-256".into(),
        prefix: "sha256=".into(),
    }
}

fn shopify() -> SchemeInput {
    SchemeInput::BodyHmacBase64 {
        header: "x-shopify-hmac-sha256".into(),
        prefix: String::new(),
    }
}

fn slack() -> SchemeInput {
    SchemeInput::VersionedHmac {
        signature_header: "x-slack-signature".into(),
        timestamp_header: "x-slack-request-timestamp".into(),
        version: "v0".into(),
    }
}

fn every_scheme() -> Vec<SchemeInput> {
    vec![
        SchemeInput::None,
        github(),
        shopify(),
        SchemeInput::StandardWebhooks,
        SchemeInput::Stripe,
        slack(),
        SchemeInput::SharedToken {
            header: "x-gitlab-token".into(),
        },
        SchemeInput::Custom,
        // Degenerate schemes a plugin could declare.
        SchemeInput::BodyHmacHex {
            header: String::new(),
            prefix: String::new(),
        },
        SchemeInput::VersionedHmac {
            signature_header: "x-same".into(),
            timestamp_header: "X-Same".into(),
            version: "v0=".into(),
        },
    ]
}

/// Header values that have broken header parsers elsewhere.
fn nasty_values() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "t=,v1=".into(),
        "t=1700000000,v1=".into(),
        "v1,".into(),
        "v1, v1,".into(),
        "v1,====".into(),
        "sha256=".into(),
        "sha256=zz".into(),
        "sha256=abc".into(),
        "v0=".into(),
        "v0=g".into(),
        ",,,,,,,,,,".into(),
        " , , , = = = ".into(),
        "=".repeat(1000),
        "t=9223372036854775807,v1=00".into(),
        "t=-9223372036854775808,v1=00".into(),
        "t=99999999999999999999999,v1=00".into(),
        "t= 1700000000 ,v1= 00".into(),
        "v1=".repeat(10_000),
        "v1,AAAA ".repeat(10_000),
        "t=1,".repeat(10_000),
        "\u{0}\u{7f}\u{fffd}é".into(),
        "9223372036854775807".into(),
        "-9223372036854775808".into(),
        "1700000000".into(),
        "x".repeat(1 << 20),
    ]
}

#[test]
fn signature_seeds() {
    let mut seeds = Vec::new();
    for scheme in every_scheme() {
        for value in nasty_values() {
            for now in [0, 1_700_000_000, i64::MIN, i64::MAX] {
                seeds.push(SignatureInput {
                    scheme: scheme.clone(),
                    // Every header of the scheme, with the value, one of them repeated.
                    headers: (0..4)
                        .map(|index| (HeaderNameInput::Expected(index), value.clone()))
                        .collect(),
                    body: value.clone().into_bytes(),
                    secrets: vec![
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                        value.clone(),
                    ],
                    now,
                    tolerance: 300,
                    message_id: value.clone(),
                });
            }
            for tolerance in [i64::MIN, -1, 0, i64::MAX] {
                seeds.push(SignatureInput {
                    scheme: scheme.clone(),
                    headers: vec![
                        (HeaderNameInput::Expected(0), value.clone()),
                        (HeaderNameInput::Expected(0x81), value.clone()),
                        (HeaderNameInput::Named("X-Other".into()), value.clone()),
                    ],
                    body: vec![0xff, 0xfe, 0],
                    secrets: vec![value.clone()],
                    now: 1_700_000_000,
                    tolerance,
                    message_id: String::new(),
                });
            }
        }
        // No secret, and secrets that are empty or not usable.
        for secrets in [
            vec![],
            vec![String::new()],
            vec!["whsec_".into(), "whsec_!".into()],
        ] {
            seeds.push(SignatureInput {
                scheme: scheme.clone(),
                headers: Vec::new(),
                body: Vec::new(),
                secrets,
                now: 0,
                tolerance: 0,
                message_id: "msg_1".into(),
            });
        }
    }
    run_checks(&seeds, fuzzing::check_signature);
}

#[test]
fn ingest_seeds() {
    let mut seeds = Vec::new();
    for scheme in every_scheme() {
        for value in nasty_values() {
            for (content_length, body_length, limit) in [
                (None, 0, 0),
                (None, 10, 10),
                (None, 11, 10),
                (Some("5".to_owned()), 100, 10),
                (Some("100".to_owned()), 5, 10),
                (Some("18446744073709551616".to_owned()), 5, 10),
                (Some("-1".to_owned()), 5, 10),
                (Some(" 5".to_owned()), 5, 10),
                (Some(String::new()), 5, u16::MAX),
            ] {
                seeds.push(IngestInput {
                    scheme: scheme.clone(),
                    headers: vec![
                        (HeaderNameInput::Expected(0), value.clone().into_bytes()),
                        (HeaderNameInput::Expected(1), vec![0x80, 0xff, b' ', b'\t']),
                        (HeaderNameInput::Named("Bad Name".into()), b"x".to_vec()),
                        (HeaderNameInput::Named("x-nul".into()), b"a\0b".to_vec()),
                    ],
                    content_length,
                    body: vec![b'{'; body_length],
                    max_body_bytes: limit,
                    secrets: vec![value.clone()],
                    now: 1_700_000_000,
                    tolerance: 300,
                    message_id: value.clone(),
                });
            }
        }
    }
    run_checks(&seeds, fuzzing::check_ingest);
}

#[test]
fn config_seeds() {
    let seeds: Vec<String> = vec![
        String::new(),
        "[".into(),
        "[[".into(),
        "a = ".into(),
        "[server]\nlisten = \"127.0.0.1:99999\"".into(),
        "[server]\nmax_body_bytes = 18446744073709551615".into(),
        "[server]\nmax_body_bytes = -9223372036854775808".into(),
        "[retention]\nevents_days = nan\nattempts_days = inf".into(),
        "[retention]\nevents_days = 1e308\nbatch_size = 9223372036854775807".into(),
        "[[sources]]\nname = \"a\"\nplugin = \"b\"\nrate_limit = { requests_per_second = nan, burst = 4294967295 }".into(),
        "[[sources]]\nname = \"a\"\nplugin = \"b\"\nsignature_tolerance_seconds = 18446744073709551615".into(),
        "[[sources]]\nname = \"a\"\nplugin = \"b\"\nsecrets = [\"\\u0000\", \"env:\", \"file:\"]".into(),
        "[[destinations]]\nname = \"d\"\nurl = \"http://[::1]:0/\\u0000\"\nroutes = [\"**/{a,{b,\"]".into(),
        "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\ntimeout_seconds = 1e300\nretry_schedule_seconds = [-0.0, 2592000.0]".into(),
        "[[destinations]]\nname = \"d\"\nurl = \"http://x\"\nrate_limit_per_second = nan\nmax_concurrency = 4294967295".into(),
        "[[destinations]]\nname = \"d\"\nurl = \"https://x\"\nbreaker_cooldown_seconds = 2592000\nthrottle_min_delay_seconds = 0".into(),
        format!("a = {}", "[".repeat(10_000)),
        format!("a = {}1{}", "[".repeat(5_000), "]".repeat(5_000)),
        format!("a = {}", "{b = ".repeat(10_000)),
        "[sources]\n".repeat(1_000),
        "x = \"\u{fffd}\u{0}\"".into(),
        "[[sources]]\nname = \"a\"\nplugin = \"b\"\n".repeat(100),
    ];
    run_checks(&seeds, |text: &String| fuzzing::check_config(text));
}

fn event(data: &str, time: TimeInput) -> EventInput {
    EventInput {
        id: "d1".into(),
        source: "https://github.com/o/r".into(),
        event_type: "github.push".into(),
        subject: None,
        time,
        data: data.into(),
        route_keys: Vec::new(),
    }
}

#[test]
fn plugin_output_seeds() {
    let mut seeds = Vec::new();
    let datas = [
        "",
        " ",
        "null",
        " {} ",
        "\t[1]\n",
        "\"\\u0000\"",
        "1e999",
        "-0",
        "{\"a\":1}{",
        "[",
        "\u{0}",
    ];
    let times = [
        TimeInput::Empty,
        TimeInput::Text("2026-11-25T16:00:00Z".into()),
        TimeInput::Text("2026-11-25 16:00:00z".into()),
        TimeInput::Text("2026-11-25T23:59:60+14:00".into()),
        TimeInput::Text("0000-01-01T00:00:00Z".into()),
        TimeInput::Text("yesterday".into()),
        TimeInput::Instant {
            seconds: i64::MAX,
            nanoseconds: u32::MAX,
            offset_minutes: i16::MAX,
        },
        TimeInput::Instant {
            seconds: 253_402_300_800,
            nanoseconds: 0,
            offset_minutes: 0,
        },
        TimeInput::Instant {
            seconds: -62_135_596_801,
            nanoseconds: 1,
            offset_minutes: -60,
        },
    ];
    for data in datas {
        for time in &times {
            seeds.push(OutcomeInput::Events(vec![event(data, time.clone())]));
        }
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    seeds.push(OutcomeInput::Events(vec![event(&deep, TimeInput::Empty)]));
    seeds.push(OutcomeInput::Events(vec![
        event("1", TimeInput::Empty),
        event("2", TimeInput::Empty),
    ]));
    seeds.push(OutcomeInput::Events(vec![EventInput {
        id: " ".into(),
        subject: Some("\u{0}".into()),
        route_keys: vec![String::new(), "a\u{0}".into()],
        ..event("1", TimeInput::Empty)
    }]));
    seeds.push(OutcomeInput::Events(Vec::new()));
    for kind in 0..=5 {
        seeds.push(OutcomeInput::Rejected {
            kind,
            reason: "\u{0}".repeat(kind.into()),
        });
    }
    for status in [0, 99, 100, 200, 599, 600, 999, 1000, u16::MAX] {
        for (name, value) in [
            ("content-type", "text/plain"),
            ("", "x"),
            ("a:b", "x"),
            ("a(b)", "x"),
            ("x", "a\r\nb"),
            ("x", "\u{7f}"),
            ("x", "é"),
            ("X-Upper", " \tspaced\t "),
        ] {
            seeds.push(OutcomeInput::Reply {
                status,
                headers: vec![(name.into(), value.into())],
                body: vec![0xff; 3],
            });
        }
    }
    run_checks(&seeds, fuzzing::check_plugin_output);
}

#[test]
fn plugin_manifest_seeds() {
    let request = SignatureInput {
        scheme: SchemeInput::None,
        headers: vec![(HeaderNameInput::Expected(0), "v1,".into())],
        body: b"{}".to_vec(),
        secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
        now: 1_700_000_000,
        tolerance: 300,
        message_id: "msg_1".into(),
    };
    let manifest = |signature: SchemeInput| ManifestInput {
        name: "github".into(),
        version: "1.0.0".into(),
        description: "GitHub".into(),
        signature,
        dedupe_header: Some("X-GitHub-Delivery".into()),
        event_types: vec!["github.*".into()],
        request: request.clone(),
    };
    let mut seeds: Vec<ManifestInput> = every_scheme().into_iter().map(manifest).collect();
    seeds.extend(
        [
            SchemeInput::BodyHmacHex {
                header: "X-Hub-Signature-256".into(),
                prefix: "sha256=".into(),
            },
            SchemeInput::SharedToken {
                header: "bad header".into(),
            },
            SchemeInput::VersionedHmac {
                signature_header: "x-sig".into(),
                timestamp_header: "x-ts:".into(),
                version: String::new(),
            },
        ]
        .map(manifest),
    );
    for name in ["", "GitHub", "a b", &"a".repeat(65), "é"] {
        seeds.push(ManifestInput {
            name: name.into(),
            ..manifest(github())
        });
    }
    seeds.push(ManifestInput {
        version: " ".into(),
        event_types: vec![String::new()],
        ..manifest(github())
    });
    // NUL anywhere: the manifest is stored as jsonb, which refuses `\u0000`.
    seeds.push(ManifestInput {
        version: "7\u{0}7".into(),
        description: "\u{0}".into(),
        dedupe_header: Some("\u{0}".into()),
        event_types: vec!["\u{0}".into()],
        ..manifest(SchemeInput::BodyHmacBase64 {
            header: "x-sig".into(),
            prefix: "\u{0}".into(),
        })
    });
    run_checks(&seeds, fuzzing::check_plugin_manifest);
}
