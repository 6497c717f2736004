# wasmhook's whole set-up is two commands: `make run` and `make test`.
#
# Compiled artifacts live outside the checkout so that clean checkouts (CI) reuse them; the
# built plugin components are copied into ./target/plugins, where the host looks for them.

SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/wasmhook/target
export CARGO_TARGET_DIR

PLUGINS := github netflix generic shopify gitlab
# Plugins in other languages: stripe in JavaScript (componentize-js from npm, versions locked in
# its package-lock.json) and slack in Python (componentize-py from PyPI, pinned, in a venv).
PYTHON_VENV := target/python-venv
TEST_PLUGINS := hostile
WASM_OUT := $(CARGO_TARGET_DIR)/wasm32-wasip2/plugin
OCTOKIT_VERSION := 7.6.1
OCTOKIT_DIR := target/fixtures/octokit-webhooks-examples-$(OCTOKIT_VERSION)

WASMHOOK := $(CARGO_TARGET_DIR)/release/wasmhook
WASMHOOK_BENCH := $(CARGO_TARGET_DIR)/release/wasmhook-bench

.PHONY: all toolchain python-deps postgres api-fuzz fuzz fuzz-check plugins test-plugins plugin-unit-tests fixtures fmt-check lint test release run send bench clean

all: plugins

toolchain:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

# The PostgreSQL server binaries: the embedded database and the test clusters run them.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		|| (echo "installing the PostgreSQL server from Debian" && apt-get update -qq \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# The official Standard Webhooks verifier, which the delivery tests check signatures with;
# schemathesis for the admin API; pytest for the Slack plugin's unit tests.
PYTEST_VERSION := 9.2.0
python-deps:
	@python3 -c "import standardwebhooks" 2>/dev/null \
		|| pip install --quiet --disable-pip-version-check --root-user-action=ignore standardwebhooks==1.1.0
	@command -v schemathesis >/dev/null 2>&1 \
		|| pip install --quiet --disable-pip-version-check --root-user-action=ignore schemathesis==4.32.5
	@python3 -c "import pytest, sys; sys.exit(pytest.__version__ != '$(PYTEST_VERSION)')" 2>/dev/null \
		|| pip install --quiet --disable-pip-version-check --root-user-action=ignore pytest==$(PYTEST_VERSION)

# One component per plugin at target/plugins/<name>.wasm.
plugins: toolchain target/plugins/stripe.wasm target/plugins/slack.wasm
	cargo build --profile plugin --target wasm32-wasip2 $(foreach p,$(PLUGINS),-p wasmhook-plugin-$(p))
	@mkdir -p target/plugins
	@$(foreach p,$(PLUGINS),cp $(WASM_OUT)/wasmhook_plugin_$(p).wasm target/plugins/$(p).wasm;)
	@ls -l target/plugins

target/plugins/stripe.wasm: wit/plugin.wit plugins/stripe/build.mjs plugins/stripe/package-lock.json $(wildcard plugins/stripe/src/*.js)
	cd plugins/stripe && npm ci --silent --no-audit --no-fund && npm run --silent build

$(PYTHON_VENV)/bin/componentize-py: plugins/slack/requirements.txt
	python3 -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install --quiet --disable-pip-version-check -r plugins/slack/requirements.txt
	@touch $@

target/plugins/slack.wasm: $(PYTHON_VENV)/bin/componentize-py wit/plugin.wit plugins/slack/build.sh $(wildcard plugins/slack/src/*.py)
	plugins/slack/build.sh

# Plugins that misbehave on purpose, for the isolation tests; never served by `make run`.
test-plugins: toolchain
	cargo build --profile plugin --target wasm32-wasip2 $(foreach p,$(TEST_PLUGINS),-p wasmhook-test-plugin-$(p))
	@mkdir -p target/test-plugins
	@$(foreach p,$(TEST_PLUGINS),cp $(WASM_OUT)/wasmhook_test_plugin_$(p).wasm target/test-plugins/$(p).wasm;)

# The JavaScript and Python plugins' own unit tests of their logic, without the component
# runtime: node's built-in test runner for stripe (no dependencies), pytest for slack against the
# bindings componentize-py generates from the contract.
plugin-unit-tests: python-deps $(PYTHON_VENV)/bin/componentize-py
	cd plugins/stripe && npm run --silent unit
	rm -rf target/slack-bindings
	$(PYTHON_VENV)/bin/componentize-py -d wit -w plugin bindings target/slack-bindings
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=target/slack-bindings:plugins/slack/src python3 -m pytest -q -p no:cacheprovider plugins/slack/tests

# The fuzz targets compile on stable (libfuzzer-sys needs nightly only for the sanitizer flags
# cargo-fuzz adds), so `make test` type-checks them and they cannot rot between `make fuzz` runs.
fuzz-check:
	cargo check --locked --manifest-path host/fuzz/Cargo.toml --bins

# Real GitHub payloads: every example of @octokit/webhooks-examples, from the npm registry.
fixtures: $(OCTOKIT_DIR)/api.github.com/index.json

$(OCTOKIT_DIR)/api.github.com/index.json:
	@mkdir -p $(OCTOKIT_DIR)
	cd $(OCTOKIT_DIR) && npm pack --silent @octokit/webhooks-examples@$(OCTOKIT_VERSION) >/dev/null \
		&& tar xzf octokit-webhooks-examples-$(OCTOKIT_VERSION).tgz --strip-components=1 \
		&& rm octokit-webhooks-examples-$(OCTOKIT_VERSION).tgz

fmt-check:
	cargo fmt --all --check

lint: toolchain
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target wasm32-wasip2 $(foreach p,$(PLUGINS),-p wasmhook-plugin-$(p)) $(foreach p,$(TEST_PLUGINS),-p wasmhook-test-plugin-$(p)) -- -D warnings

# Every check: formatting, lints with warnings denied, and every test.
test: fmt-check lint fuzz-check postgres python-deps plugins test-plugins fixtures plugin-unit-tests
	set -o pipefail; cargo test --workspace 2>&1 | tee target/test-output.log
	scripts/api-fuzz.sh
	@awk '/^test result:/ { passed += $$4; failed += $$6 } END { printf "%d passed, %d failed\n", passed, failed }' target/test-output.log

# Schemathesis against the admin API of a real host (also part of `make test`).
api-fuzz: postgres python-deps plugins
	cargo build -p wasmhook
	scripts/api-fuzz.sh

# libFuzzer on the host's parsers (nightly, its own target dir; not part of `make test`, which only
# type-checks the targets with fuzz-check):
# every target in host/fuzz for FUZZ_SECONDS each. See scripts/fuzz.sh.
FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

release:
	cargo build --release -p wasmhook

# Serves the example configuration (examples/wasmhook.toml) with an embedded PostgreSQL.
run: postgres plugins release
	$(WASMHOOK) serve --config examples/wasmhook.toml

# Posts one signed GitHub push to the host `make run` started.
send: release
	$(WASMHOOK) send --config examples/wasmhook.toml --source github \
		--body tests/fixtures/github/push.json -H 'X-GitHub-Event: push'

# Benchmarks (not run by `make test`; about 10-15 minutes): the whole set with fixed counts,
# printed as tables and written to the generated block of BENCHMARKS.md. See scripts/bench.sh.
# The load generator is its own crate (tools/bench), so the release binary does not carry it.
# `make bench BASELINE=<rev>` also runs the build of <rev> against this one (scripts/bench-baseline.sh).
BASELINE ?=
bench: postgres plugins release
	cargo build --release -p wasmhook-bench
	WASMHOOK=$(WASMHOOK) WASMHOOK_BENCH=$(WASMHOOK_BENCH) BASELINE=$(BASELINE) scripts/bench.sh

clean:
	rm -rf target
