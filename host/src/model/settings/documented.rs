//! Test support for the settings' defaults, which are written in code (`impl Default`),
//! documented in the embedded default config and repeated as the migrations' column defaults:
//! the settings' tests read the other two here and compare them with the code.

use std::collections::BTreeMap;

/// The embedded default config, read here rather than through `config`, which sits above
/// `model` in the layers.
pub const DEFAULT_CONFIG: &str = include_str!("../../default-config.toml");

/// The first entry of the commented `[[section]]` example in the default config, as a TOML
/// table: the example's lines without their leading `# ` (its trailing comments stay comments).
pub fn documented_example(section: &str) -> toml::Table {
    let start = DEFAULT_CONFIG
        .find(&format!("# [[{section}]]"))
        .unwrap_or_else(|| panic!("the default config documents [[{section}]]"));
    let example: String = DEFAULT_CONFIG[start..]
        .lines()
        .take_while(|line| line.starts_with('#'))
        .map(|line| format!("{}\n", line.trim_start_matches('#').trim_start()))
        .collect();
    let mut table: toml::Table = example.parse().expect("the documented example is TOML");
    let entries = table
        .remove(section)
        .unwrap_or_else(|| panic!("a [[{section}]] table"));
    entries.as_array().expect("an array of tables")[0]
        .as_table()
        .expect("a table")
        .clone()
}

/// The line of the default config's example that documents `key`.
pub fn documented_line(key: &str) -> &'static str {
    DEFAULT_CONFIG
        .lines()
        .find(|line| line.starts_with(&format!("# {key} = ")))
        .unwrap_or_else(|| panic!("default-config.toml has no line for {key}"))
}

/// Settings of type `Settings` with only `key` given as `value`, the others left to their
/// defaults.
pub fn with_only<Settings: serde::de::DeserializeOwned>(
    key: &str,
    value: serde_json::Value,
) -> Settings {
    serde_json::from_value(serde_json::json!({ key: value }))
        .unwrap_or_else(|error| panic!("{key} = {value}: {error}"))
}

/// Every setting's key, with its default as JSON.
pub fn default_settings<Settings: Default + serde::Serialize>()
-> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(Settings::default()).expect("the settings serialize") {
        serde_json::Value::Object(map) => map,
        other => panic!("the settings serialize as an object, not {other}"),
    }
}

/// The last `DEFAULT` each column of `table` is given in the migrations (`CREATE TABLE`, `ADD
/// COLUMN`, `ALTER COLUMN … SET DEFAULT`), and the columns made without one.
pub fn migration_defaults(table: &str) -> BTreeMap<String, Option<String>> {
    let mut columns = BTreeMap::new();
    for text in migrations() {
        // Comments go first: they may hold a `;`.
        let text: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim().starts_with("--"))
            .collect();
        for statement in text.join("\n").split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let names = |verb: &str| {
                words
                    .windows(3)
                    .any(|three| three == [verb, "TABLE", table])
            };
            let created = names("CREATE");
            if !created && !names("ALTER") {
                continue;
            }
            // Each clause is a line of its own (an array default holds commas).
            for clause in statement.lines() {
                if let Some((column, default)) = column_clause(clause, created) {
                    columns.insert(column, default);
                }
            }
        }
    }
    columns
}

/// Every migration's text, in the order they run.
fn migrations() -> Vec<String> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("the migrations directory")
        .map(|entry| entry.expect("a migration").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| std::fs::read_to_string(file).expect("a readable migration"))
        .collect()
}

/// The column a clause makes or changes, with its default: in `CREATE TABLE` a line that starts
/// with a column's name, in `ALTER TABLE` an `ADD COLUMN` or `ALTER COLUMN … SET DEFAULT`.
fn column_clause(clause: &str, created: bool) -> Option<(String, Option<String>)> {
    let clause = clause.trim().trim_end_matches(',');
    let default = clause
        .split_once(" DEFAULT ")
        .map(|(_, value)| value.trim().to_owned());
    let words: Vec<&str> = clause.split_whitespace().collect();
    if created {
        let name = words.first()?;
        let is_column = name.starts_with(|character: char| character.is_ascii_lowercase());
        return is_column.then(|| (name.to_string(), default));
    }
    let at = words
        .windows(2)
        .position(|pair| matches!(pair, ["ADD" | "ALTER", "COLUMN"]))?;
    (default.is_some() || words[at] == "ADD").then(|| (words[at + 2].to_owned(), default))
}
