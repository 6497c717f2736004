//! The destination settings' defaults are written in code (`impl Default`), documented in the
//! embedded default config and repeated as the migrations' column defaults; these tests fail
//! when one of the three changes without the others.

use super::DestinationSettings;
use crate::model::settings::documented::{
    default_settings, documented_example, documented_line, migration_defaults, with_only,
};

#[test]
fn the_default_config_documents_every_destination_setting_with_its_default() {
    let documented = documented_example("destinations");
    let defaults = DestinationSettings::default();
    for (key, default) in default_settings::<DestinationSettings>() {
        let value = documented
            .get(&key)
            .unwrap_or_else(|| panic!("default-config.toml does not document {key}"));
        if default.is_null() {
            // A setting that is off by default is documented with an example value, as such.
            let line = documented_line(&key);
            assert!(line.contains("off when absent"), "{line}");
        } else {
            let value = serde_json::to_value(value).expect("TOML converts to JSON");
            assert_eq!(
                with_only::<DestinationSettings>(&key, value),
                defaults,
                "default-config.toml's {key}"
            );
        }
    }
}

/// A column default as the setting's JSON: milliseconds as seconds, arrays from `'{…}'`.
fn column_default_as_setting(column: &str, default: &str) -> serde_json::Value {
    let number = |text: &str| -> serde_json::Value {
        let value: i64 = text.trim().parse().expect("an integer");
        if column.ends_with("_ms") {
            serde_json::json!(value as f64 / 1000.0)
        } else {
            serde_json::json!(value)
        }
    };
    match default {
        "true" | "false" => serde_json::json!(default == "true"),
        quoted if quoted.starts_with("'{") => {
            let inner = quoted.trim_matches(|character| "'{}".contains(character));
            serde_json::Value::Array(inner.split(',').map(number).collect())
        }
        plain => number(plain),
    }
}

#[test]
fn the_migrations_give_every_destination_setting_its_default() {
    let columns = migration_defaults("destinations");
    let defaults = DestinationSettings::default();
    for (key, default) in default_settings::<DestinationSettings>() {
        // A duration is stored in milliseconds: `timeout_seconds` is the column `timeout_ms`.
        let column = key.replace("_seconds", "_ms");
        let column_default = columns
            .get(&column)
            .unwrap_or_else(|| panic!("no migration adds the column destinations.{column}"));
        match (column_default, default.is_null()) {
            (None, true) => {}
            (Some(value), false) => {
                let value = column_default_as_setting(&column, value);
                assert_eq!(
                    with_only::<DestinationSettings>(&key, value),
                    defaults,
                    "the migrations' {column}"
                );
            }
            (column_default, _) => panic!(
                "destinations.{column} has the default {column_default:?}, the code {default}"
            ),
        }
    }
}
