//! The architecture's rules, checked over the host's source files: SQL only in `store/`,
//! `wasmtime` only in `plugins/`, the folders' imports running one way down the layers of
//! ARCHITECTURE.md, and no two modules importing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repository_root;

/// The layers, top first. A module may import modules of its own layer's folder and of the
/// layers below it, never above; modules of one layer may not import each other.
const LAYERS: &[&[&str]] = &[
    &["main"],
    &["app"],
    &["admin", "cli", "fuzzing"],
    &["ingest"],
    &["sources"],
    &["config", "http_error"],
    &["delivery", "plugins"],
    &["store"],
    &["model"],
    &["signature", "rate_limit", "metrics"],
];

/// The longest a source file may be, its unit tests included.
const MOST_LINES_PER_FILE: usize = 900;

/// The longest a function may be, and the few wiring functions allowed to be longer.
const MOST_LINES_PER_FUNCTION: usize = 80;
const LONG_FUNCTIONS_ALLOWED: &[&str] = &[];

struct SourceFile {
    /// The path under `host/src`, with `/` separators.
    relative: String,
    /// The module path of the file, e.g. `["store", "jobs"]`.
    module: Vec<String>,
    /// The text without comments, so that prose naming a crate or a keyword does not count.
    code: String,
}

fn host_sources() -> Vec<SourceFile> {
    let root = repository_root().join("host").join("src");
    let mut files = Vec::new();
    collect_rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(&root)
                .expect("the file is under host/src")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            SourceFile {
                module: module_path(&relative),
                code: without_comments(&text),
                relative,
            }
        })
        .collect()
}

fn collect_rust_files(folder: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("the source folder is readable")
        .map(|entry| entry.expect("a folder entry is readable").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

fn module_path(relative: &str) -> Vec<String> {
    let without_extension = relative.trim_end_matches(".rs");
    let mut parts: Vec<String> = without_extension.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// Drops `//` line comments (doc comments included). Block comments are not used in the host.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(start) if !inside_string_literal(&line[..start]) => &line[..start],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn inside_string_literal(before: &str) -> bool {
    before.matches('"').count() % 2 == 1
}

/// The crate-local modules a file imports, as module paths of up to two segments
/// (`crate::store::jobs::claim` gives `store::jobs`).
fn imported_modules(
    file: &SourceFile,
    all_modules: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let mut imported = BTreeSet::new();
    let prefix = if file.relative == "main.rs" {
        "wasmhook::"
    } else {
        "crate::"
    };
    for (start, _) in file.code.match_indices(prefix) {
        let rest = &file.code[start + prefix.len()..];
        for path in expand_use_tree(rest) {
            let longest = (1..=path.len().min(2))
                .rev()
                .map(|length| path[..length].to_vec())
                .find(|candidate| all_modules.contains(candidate));
            if let Some(module) = longest {
                imported.insert(module);
            }
        }
    }
    imported
}

/// The paths named after `crate::`: `a::b::C` gives one, `a::{b, c::D}` gives `a::b` and `a::c::D`.
fn expand_use_tree(rest: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut remaining = rest;
    loop {
        let identifier: String = remaining
            .chars()
            .take_while(|character| character.is_alphanumeric() || *character == '_')
            .collect();
        if identifier.is_empty() {
            break;
        }
        segments.push(identifier.clone());
        remaining = &remaining[identifier.len()..];
        if let Some(after) = remaining.strip_prefix("::") {
            remaining = after;
            if let Some(group) = remaining.strip_prefix('{') {
                return expand_group(&segments, group);
            }
        } else {
            break;
        }
    }
    vec![segments]
}

fn expand_group(prefix: &[String], group: &str) -> Vec<Vec<String>> {
    let mut depth = 0usize;
    let mut item_start = 0usize;
    let mut items = Vec::new();
    for (index, character) in group.char_indices() {
        match character {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[item_start..index]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[item_start..index]);
                item_start = index + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .flat_map(|item| {
            expand_use_tree(item.trim()).into_iter().map(|tail| {
                let mut path = prefix.to_vec();
                path.extend(tail.into_iter().filter(|segment| segment != "self"));
                path
            })
        })
        .collect()
}

fn layer_of(top_level: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&top_level))
}

#[test]
fn sql_appears_only_in_the_store() {
    const SQL_MARKERS: &[&str] = &[
        "sqlx::query",
        "query_as",
        "query_scalar",
        "PgListener",
        "\"SELECT ",
        "\"INSERT ",
        "\"UPDATE ",
        "\"DELETE ",
        "\"WITH ",
        "\"LISTEN ",
        "NOTIFY ",
    ];
    let offenders: Vec<String> = host_sources()
        .iter()
        .filter(|file| !file.relative.starts_with("store/"))
        .flat_map(|file| {
            SQL_MARKERS
                .iter()
                .filter(|marker| file.code.contains(**marker))
                .map(|marker| format!("{} contains {marker}", file.relative))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "SQL outside host/src/store: {offenders:#?}"
    );
}

#[test]
fn wasmtime_is_imported_only_by_the_plugin_runtime() {
    let offenders: Vec<String> = host_sources()
        .iter()
        .filter(|file| !file.relative.starts_with("plugins/"))
        .filter(|file| file.code.contains("wasmtime"))
        .map(|file| file.relative.clone())
        .collect();
    assert!(
        offenders.is_empty(),
        "wasmtime outside host/src/plugins: {offenders:?}"
    );
}

#[test]
fn every_folder_belongs_to_a_layer() {
    let unplaced: BTreeSet<String> = host_sources()
        .iter()
        .filter_map(|file| file.module.first().cloned().or(Some("main".into())))
        .filter(|top_level| top_level != "main" && layer_of(top_level).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from LAYERS: {unplaced:?}"
    );
}

#[test]
fn imports_run_down_the_layers_and_never_both_ways() {
    let files = host_sources();
    let all_modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|file| {
            (1..=file.module.len().min(2)).map(|length| file.module[..length].to_vec())
        })
        .collect();
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let own: Vec<String> = file.module.iter().take(2).cloned().collect();
        let own_top = own.first().cloned().unwrap_or_else(|| "main".into());
        for imported in imported_modules(file, &all_modules) {
            let imported_top = &imported[0];
            if *imported_top == own_top || own.is_empty() {
                if imported != own && !own.is_empty() {
                    graph.entry(own.clone()).or_default().insert(imported);
                }
                continue;
            }
            let (Some(from), Some(to)) = (layer_of(&own_top), layer_of(imported_top)) else {
                continue;
            };
            if to <= from {
                violations.push(format!(
                    "{} imports {} (layer {to} is not below {from})",
                    file.relative,
                    imported.join("::")
                ));
            }
            graph
                .entry(vec![own_top.clone()])
                .or_default()
                .insert(vec![imported_top.clone()]);
        }
    }
    for (module, imports) in &graph {
        for imported in imports {
            if graph
                .get(imported)
                .is_some_and(|back| back.contains(module))
                && module < imported
            {
                violations.push(format!(
                    "{} and {} import each other",
                    module.join("::"),
                    imported.join("::")
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations: {violations:#?}"
    );
}

#[test]
fn every_folder_has_a_module_doc_saying_what_it_owns() {
    let undocumented: Vec<String> = host_sources()
        .iter()
        .filter(|file| file.relative.ends_with("/mod.rs"))
        .filter(|file| {
            let text =
                std::fs::read_to_string(repository_root().join("host/src").join(&file.relative))
                    .expect("a source file is readable");
            !text.starts_with("//!")
        })
        .map(|file| file.relative.clone())
        .collect();
    assert!(
        undocumented.is_empty(),
        "folders without a module doc: {undocumented:?}"
    );
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let long: Vec<String> = host_sources()
        .iter()
        .filter(|file| file.code.lines().count() > MOST_LINES_PER_FILE)
        .map(|file| format!("{}: {} lines", file.relative, file.code.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MOST_LINES_PER_FILE} lines: {long:#?}"
    );
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let long: Vec<String> = host_sources()
        .iter()
        .flat_map(|file| {
            function_lengths(&file.code)
                .into_iter()
                .filter(|(name, length)| {
                    *length > MOST_LINES_PER_FUNCTION
                        && !LONG_FUNCTIONS_ALLOWED
                            .contains(&format!("{}::{name}", file.relative).as_str())
                })
                .map(|(name, length)| format!("{}::{name}: {length} lines", file.relative))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MOST_LINES_PER_FUNCTION} lines: {long:#?}"
    );
}

/// Each function's name and length in lines, from its `fn` line to the closing brace rustfmt
/// puts at the same indentation.
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut lengths = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indentation = &line[..line.len() - trimmed.len()];
        let Some(name) = function_name(trimmed) else {
            continue;
        };
        if trimmed.ends_with(';') {
            continue;
        }
        let closing = format!("{indentation}}}");
        if let Some(offset) = lines[start..]
            .iter()
            .position(|candidate| *candidate == closing)
        {
            lengths.push((name, offset + 1));
        }
    }
    lengths
}

fn function_name(trimmed: &str) -> Option<String> {
    let mut rest = trimmed;
    for qualifier in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(qualifier).unwrap_or(rest);
    }
    let after = rest.strip_prefix("fn ")?;
    let name: String = after
        .chars()
        .take_while(|character| character.is_alphanumeric() || *character == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// ARCHITECTURE.md names, for each invariant, the tests that enforce it: every one it names must
/// exist, so that a renamed or deleted test cannot leave the document claiming a guard that is gone.
#[test]
fn every_test_the_architecture_document_names_exists() {
    let document = std::fs::read_to_string(repository_root().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is readable");
    let mut test_sources = String::new();
    for folder in ["tests", "host/src"] {
        let mut files = Vec::new();
        collect_rust_files(&repository_root().join(folder), &mut files);
        for file in files {
            test_sources
                .push_str(&std::fs::read_to_string(file).expect("a source file is readable"));
        }
    }
    let named: Vec<&str> = document
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("Tests: "))
        .flat_map(|tests| tests.split('`').skip(1).step_by(2))
        .filter(|name| !name.ends_with('*'))
        .collect();
    assert!(named.len() > 40, "the document names {} tests", named.len());
    let missing: Vec<&str> = named
        .into_iter()
        .filter(|name| {
            let function = name.rsplit("::").next().expect("a name has a last segment");
            !test_sources.contains(&format!("fn {function}("))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names tests that do not exist: {missing:?}"
    );
}
