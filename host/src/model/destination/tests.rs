//! The destination settings' defaults are written in code (`impl Default`), documented in the
//! embedded default config and repeated as the migrations' column defaults; these tests fail
//! when one of the three changes without the others.

use super::DestinationSettings;

/// The embedded default config, read here rather than through `config`, which sits above
/// `model` in the layers.
const DEFAULT_CONFIG: &str = include_str!("../../default-config.toml");

/// The settings of the commented `[[destinations]]` example in the default config, as a TOML
/// table: the example's lines without their leading `# ` (its trailing comments stay comments).
fn documented_settings() -> toml::Table {
    let start = DEFAULT_CONFIG
        .find("# [[destinations]]")
        .expect("the default config documents a destination");
    let example: String = DEFAULT_CONFIG[start..]
        .lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| format!("{}\n", line.trim_start_matches('#').trim_start()))
        .collect();
    let mut table: toml::Table = example.parse().expect("the documented example is TOML");
    let destinations = table
        .remove("destinations")
        .expect("a [[destinations]] table");
    destinations.as_array().expect("an array of tables")[0]
        .as_table()
        .expect("a table")
        .clone()
}

/// The settings with only `key` given as `value`, the others left to their defaults.
fn with_only(key: &str, value: serde_json::Value) -> DestinationSettings {
    serde_json::from_value(serde_json::json!({ key: value }))
        .unwrap_or_else(|error| panic!("{key} = {value}: {error}"))
}

/// Every setting's key, with its default as JSON.
fn default_settings() -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(DestinationSettings::default()).expect("the settings serialize") {
        serde_json::Value::Object(map) => map,
        other => panic!("the settings serialize as an object, not {other}"),
    }
}

#[test]
fn the_default_config_documents_every_destination_setting_with_its_default() {
    let documented = documented_settings();
    let defaults = DestinationSettings::default();
    for (key, default) in default_settings() {
        let value = documented
            .get(&key)
            .unwrap_or_else(|| panic!("default-config.toml does not document {key}"));
        if default.is_null() {
            // A setting that is off by default is documented with an example value, as such.
            let line = DEFAULT_CONFIG
                .lines()
                .find(|line| line.starts_with(&format!("# {key} = ")))
                .expect("the documented line");
            assert!(line.contains("off when absent"), "{line}");
        } else {
            let value = serde_json::to_value(value).expect("TOML converts to JSON");
            assert_eq!(
                with_only(&key, value),
                defaults,
                "default-config.toml's {key}"
            );
        }
    }
}

/// The last `DEFAULT` each column of `destinations` is given in the migrations (`ADD COLUMN`,
/// `ALTER COLUMN … SET DEFAULT`), and the columns added without one.
fn migration_defaults() -> std::collections::BTreeMap<String, Option<String>> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a migration").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sql"))
        .collect();
    files.sort();
    let mut columns = std::collections::BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a readable migration");
        // Comments go first: they may hold a `;`.
        let text: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().starts_with("--"))
            .collect();
        for statement in text.join("\n").split(';') {
            if !statement.contains("ALTER TABLE destinations") {
                continue;
            }
            // Each clause is a line of its own (an array default holds commas).
            for clause in statement.lines() {
                let clause = clause.trim().trim_end_matches(',');
                let words: Vec<&str> = clause.split_whitespace().collect();
                let Some(at) = words
                    .windows(2)
                    .position(|pair| matches!(pair, ["ADD" | "ALTER", "COLUMN"]))
                else {
                    continue;
                };
                let default = clause
                    .split_once(" DEFAULT ")
                    .map(|(_, value)| value.trim().to_owned());
                if default.is_some() || words[at] == "ADD" {
                    columns.insert(words[at + 2].to_owned(), default);
                }
            }
        }
    }
    columns
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
    let columns = migration_defaults();
    let defaults = DestinationSettings::default();
    for (key, default) in default_settings() {
        // A duration is stored in milliseconds: `timeout_seconds` is the column `timeout_ms`.
        let column = key.replace("_seconds", "_ms");
        let column_default = columns
            .get(&column)
            .unwrap_or_else(|| panic!("no migration adds the column destinations.{column}"));
        match (column_default, default.is_null()) {
            (None, true) => {}
            (Some(value), false) => {
                let value = column_default_as_setting(&column, value);
                assert_eq!(with_only(&key, value), defaults, "the migrations' {column}");
            }
            (column_default, _) => panic!(
                "destinations.{column} has the default {column_default:?}, the code {default}"
            ),
        }
    }
}
