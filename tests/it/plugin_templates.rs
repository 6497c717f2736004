//! The plugin templates never rot: each is copied out of the repository, built with its own
//! documented commands, and run against its fixtures by `wasmhook plugin run --fixtures`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies a template, leaving out what its own builds produce.
fn copy_template(language: &str) -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if ["node_modules", ".venv", "dist", "target"].contains(&name.to_str().unwrap()) {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name));
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    let directory = tempfile::tempdir().unwrap();
    let copied = directory.path().join(language);
    copy(
        &support::repository_root()
            .join("plugins/templates")
            .join(language),
        &copied,
    );
    (directory, copied)
}

fn run(command: &mut Command) {
    let output = command.output().expect("the build tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the template's fixtures through the host's runtime and checks they pass.
fn passes_its_fixtures(component: &Path, template: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["plugin", "run"])
        .arg(component)
        .arg("--fixtures")
        .arg(template.join("fixtures"))
        .env(
            "XDG_CACHE_HOME",
            support::repository_root().join("target/test-cli-cache"),
        )
        .output()
        .expect("wasmhook runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed, 0 failed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_rust_template_builds_and_passes_its_test_and_fixtures() {
    let (_directory, template) = copy_template("rust");
    // Out of the repository, the SDK is found where the author's checkout has it.
    let manifest = template.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "path = \"../../sdk\"",
        &format!(
            "path = {:?}",
            support::repository_root().join("plugins/sdk")
        ),
    );
    std::fs::write(&manifest, text).unwrap();
    // A target directory that outlives the test, so reruns and CI reuse the dependencies.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repository_root().join("target"))
        .join("plugin-templates");
    run(Command::new("cargo")
        .arg("test")
        .current_dir(&template)
        .env("CARGO_TARGET_DIR", &target));
    run(Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&template)
        .env("CARGO_TARGET_DIR", &target));
    passes_its_fixtures(
        &target.join("wasm32-wasip2/release/wasmhook_plugin_example.wasm"),
        &template,
    );
}

#[test]
fn the_javascript_template_builds_and_passes_its_fixtures() {
    let (_directory, template) = copy_template("javascript");
    run(Command::new("npm")
        .args(["ci", "--silent", "--no-audit", "--no-fund"])
        .current_dir(&template));
    run(Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(&template));
    passes_its_fixtures(&template.join("dist/example.wasm"), &template);
}

#[test]
fn the_python_template_builds_and_passes_its_fixtures() {
    let (_directory, template) = copy_template("python");
    run(Command::new("python3")
        .args(["-m", "venv", ".venv"])
        .current_dir(&template));
    run(Command::new(template.join(".venv/bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            "requirements.txt",
        ])
        .current_dir(&template));
    run(Command::new(template.join("build.sh")).current_dir(&template));
    passes_its_fixtures(&template.join("dist/example.wasm"), &template);
}
