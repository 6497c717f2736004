//! The source settings' defaults are written in code (`impl Default`), documented in the
//! embedded default config and repeated as the migrations' column defaults; these tests fail
//! when one of the three changes without the others.

use super::SourceSettings;
use crate::model::settings::FlattenedSettings;
use crate::model::settings::documented::{
    default_settings, documented_example, documented_line, migration_defaults, with_only,
};

/// Whether a default leaves the setting to something else (no limit, the server's value),
/// which the default config documents with an example value and says so.
fn is_left_to_others(default: &serde_json::Value) -> bool {
    default.is_null() || default.as_object().is_some_and(|object| object.is_empty())
}

#[test]
fn the_default_config_documents_every_source_setting_with_its_default() {
    let documented = documented_example("sources");
    let defaults = SourceSettings::default();
    for (key, default) in default_settings::<SourceSettings>() {
        let value = documented
            .get(&key)
            .unwrap_or_else(|| panic!("default-config.toml does not document {key}"));
        let value = serde_json::to_value(value).expect("TOML converts to JSON");
        let documented_settings = with_only::<SourceSettings>(&key, value);
        if is_left_to_others(&default) {
            let line = documented_line(&key);
            assert!(line.contains("when absent"), "{line}");
        } else {
            assert_eq!(documented_settings, defaults, "default-config.toml's {key}");
        }
    }
}

/// The columns of `sources` that hold each setting (the rate limit is two).
fn columns_of(key: &str) -> &'static [&'static str] {
    match key {
        "config" => &["config"],
        "signature_tolerance_seconds" => &["signature_tolerance_seconds"],
        "rate_limit" => &["rate_limit_requests_per_second", "rate_limit_burst"],
        "limits" => &["limit_overrides"],
        "dedupe_on_body" => &["dedupe_on_body"],
        other => panic!("the test does not know the columns of the source setting {other}"),
    }
}

/// A column default as the setting's JSON: `''` text, `'{}'` an empty JSON object.
fn column_default_as_setting(default: &str) -> serde_json::Value {
    match default {
        "true" | "false" => serde_json::json!(default == "true"),
        "''" => serde_json::json!(""),
        "'{}'" => serde_json::json!({}),
        number => serde_json::json!(number.parse::<i64>().expect("an integer")),
    }
}

#[test]
fn the_migrations_give_every_source_setting_its_default() {
    let columns = migration_defaults("sources");
    let defaults = SourceSettings::default();
    for (key, default) in default_settings::<SourceSettings>() {
        for column in columns_of(&key) {
            let column_default = columns
                .get(*column)
                .unwrap_or_else(|| panic!("no migration makes the column sources.{column}"));
            match (column_default, default.is_null()) {
                (None, true) => {}
                (Some(value), false) => assert_eq!(
                    with_only::<SourceSettings>(&key, column_default_as_setting(value)),
                    defaults,
                    "the migrations' {column}"
                ),
                (column_default, _) => panic!(
                    "sources.{column} has the default {column_default:?}, the code {default}"
                ),
            }
        }
    }
}

#[test]
fn the_flattened_keys_are_the_fields_in_order() {
    assert_eq!(
        SourceSettings::keys(),
        [
            "config",
            "signature_tolerance_seconds",
            "rate_limit",
            "limits",
            "dedupe_on_body"
        ]
    );
}

#[test]
fn a_bad_setting_is_refused_with_its_key() {
    let cases: &[(serde_json::Value, &str)] = &[
        (
            serde_json::json!({ "signature_tolerance_seconds": 86401 }),
            "signature_tolerance_seconds",
        ),
        (
            serde_json::json!({ "rate_limit": { "requests_per_second": 0.0, "burst": 1 } }),
            "rate_limit",
        ),
        (
            serde_json::json!({ "rate_limit": { "requests_per_second": 1.0, "burst": 0 } }),
            "rate_limit",
        ),
        (
            serde_json::json!({ "limits": { "deadline_ms": 0 } }),
            "limits",
        ),
        (
            serde_json::json!({ "limits": { "max_memory_bytes": 0 } }),
            "limits",
        ),
    ];
    for (input, key) in cases {
        let settings: SourceSettings = serde_json::from_value(input.clone()).expect("parses");
        assert_eq!(
            settings.check().map_err(|(field, _)| field),
            Err(*key),
            "{input}"
        );
    }
    assert_eq!(SourceSettings::default().check(), Ok(()));
}

#[test]
fn the_signature_tolerance_falls_back_to_the_server_default() {
    let given = SourceSettings {
        signature_tolerance_seconds: Some(30),
        ..SourceSettings::default()
    };
    assert_eq!(given.signature_tolerance(300), 30);
    assert_eq!(SourceSettings::default().signature_tolerance(300), 300);
}
