//! One call of a plugin: a fresh store under every limit, the CPU deadline (epoch ticks) and
//! the wall-clock timeout, the cap on what it returns, and its failure as a typed error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use super::engine::EPOCH_TICK;
use super::host_imports::{MAX_VERIFY_CALLS_PER_CALL, PluginState};
use super::limits::{CapturedOutput, MemoryLimiter};
use super::manifest::validate_scheme;
use super::wit::{
    InvalidAnswer, bindings, manifest_from_wit, outcome_from_wit, outcome_size, request_to_wit,
    scheme_from_wit,
};
use super::{
    ConfigureError, ConfiguredSource, Plugin, PluginCallError, PluginCallReport, PluginManifest,
    PluginRequest, RequestCheck, escape_for_log,
};
use crate::metrics;
use crate::signature::Secret;

impl Plugin {
    pub(super) async fn describe(&self) -> Result<PluginManifest, PluginCallError> {
        let (manifest, _) = self
            .run("load", CallSecrets::none(), async |plugin, store| {
                plugin
                    .wasmhook_plugin_handler()
                    .call_describe(store)
                    .await
                    .map(manifest_from_wit)
            })
            .await?;
        Ok(manifest)
    }

    /// Checks one source's configuration string and derives its settings.
    pub async fn configure(&self, config: &str) -> Result<ConfiguredSource, ConfigureError> {
        let (settings, _) = self
            .run("configure", CallSecrets::none(), async |plugin, store| {
                plugin
                    .wasmhook_plugin_handler()
                    .call_configure(store, config)
                    .await
            })
            .await
            .map_err(ConfigureError::Call)?;
        let settings = settings.map_err(ConfigureError::Refused)?;
        let settings = ConfiguredSource {
            signature: scheme_from_wit(settings.signature),
            dedupe_header: settings.dedupe_header,
        };
        validate_scheme(&settings.signature).map_err(ConfigureError::Refused)?;
        Ok(settings)
    }

    /// Runs `handle` on one request that the host did not verify (see [`Plugin::handle_checked`]).
    pub async fn handle(
        &self,
        request: PluginRequest,
        secrets: Arc<[Secret]>,
    ) -> Result<PluginCallReport, PluginCallError> {
        self.handle_checked(request, secrets, RequestCheck::NotVerifiedByHost)
            .await
    }

    /// Runs `handle` on one request in a fresh instance. `secrets` are the source's active
    /// secrets, used only by the `verify-hmac-sha256` and `sign-hmac-sha256` imports; `check`
    /// says whether the host verified the request, which decides when signing is allowed.
    pub async fn handle_checked(
        &self,
        request: PluginRequest,
        secrets: Arc<[Secret]>,
        check: RequestCheck,
    ) -> Result<PluginCallReport, PluginCallError> {
        let request_id = request.request_id.clone();
        let received_at = request.received_at;
        let wit_request = request_to_wit(request);
        let started = Instant::now();
        let result = self
            .run(
                &request_id,
                CallSecrets { secrets, check },
                async |plugin, store| {
                    plugin
                        .wasmhook_plugin_handler()
                        .call_handle(store, &wit_request)
                        .await
                },
            )
            .await;
        metrics::plugin_call(
            &self.manifest.name,
            &self.manifest.version,
            started.elapsed(),
        );
        let (outcome, usage) = result.inspect_err(|error| {
            metrics::plugin_failure(&self.manifest.name, &self.manifest.version, error.kind());
        })?;
        let output_bytes = outcome_size(&outcome);
        if output_bytes > self.limits.max_output_bytes {
            metrics::plugin_failure(
                &self.manifest.name,
                &self.manifest.version,
                "output_too_large",
            );
            return Err(PluginCallError::OutputTooLarge {
                plugin: self.label.to_string(),
                request_id,
                output_bytes,
                limit_bytes: self.limits.max_output_bytes,
            });
        }
        let outcome = outcome_from_wit(outcome, received_at).map_err(|invalid| {
            let plugin = self.label.to_string();
            let request_id = request_id.clone();
            let error = match invalid {
                InvalidAnswer::EventIdTooLong(reason) => PluginCallError::EventIdTooLong {
                    plugin,
                    request_id,
                    reason,
                },
                InvalidAnswer::Other(reason) => PluginCallError::InvalidOutput {
                    plugin,
                    request_id,
                    reason,
                },
            };
            metrics::plugin_failure(&self.manifest.name, &self.manifest.version, error.kind());
            error
        })?;
        Ok(PluginCallReport {
            outcome,
            instantiate: usage.instantiate,
            call: usage.call,
            peak_memory_bytes: usage.peak_memory_bytes,
            output_bytes,
            log_bytes: usage.log_bytes,
        })
    }

    /// Instantiates the component in a fresh store under every limit, runs `call`, forwards
    /// the captured stdout and stderr as logs, and turns any failure into a typed error.
    async fn run<R>(
        &self,
        request_id: &str,
        secrets: CallSecrets,
        call: impl AsyncFnOnce(&bindings::Plugin, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<(R, CallUsage), PluginCallError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self
            .runtime
            .instance_permits
            .acquire()
            .await
            .expect("the instance semaphore is never closed");
        let deadline = Duration::from_millis(self.limits.deadline_ms);
        let started = Instant::now();
        let stdout = CapturedOutput::new(self.limits.max_log_bytes);
        let stderr = CapturedOutput::new(self.limits.max_log_bytes);
        // The deadline counts the ticks in which the guest ran, not wall time: a plugin waiting
        // for a busy executor (it yields every tick) is not charged for the wait, so a loaded
        // host does not fail well-behaved plugins.
        let deadline_ticks = deadline.as_millis().div_ceil(EPOCH_TICK.as_millis()).max(1) as u64;
        let mut store = self.new_store(request_id, secrets, &stdout, &stderr, deadline_ticks);

        let mut instantiate = Duration::ZERO;
        // Epoch interruption stops a guest that computes; this wall-clock timeout covers what
        // ticks cannot see (a host call that would block), generously, so that a busy executor
        // does not trip it.
        let wall_clock_limit = (deadline * 10).max(Duration::from_secs(1));
        let result = tokio::time::timeout(wall_clock_limit, async {
            let plugin = self.pre.instantiate_async(&mut store).await?;
            instantiate = started.elapsed();
            call(&plugin, &mut store).await
        })
        .await;
        let elapsed = started.elapsed();

        self.forward_captured_output(request_id, &stdout, &stderr);
        let state = store.data();
        let usage = CallUsage {
            instantiate,
            call: elapsed.saturating_sub(instantiate),
            peak_memory_bytes: state.limiter.peak_memory_bytes,
            log_bytes: state.log_bytes_used + stdout.len() + stderr.len(),
        };
        let failure = match result {
            Ok(Ok(value)) => return Ok((value, usage)),
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                return Err(PluginCallError::DeadlineExceeded {
                    plugin: self.label.to_string(),
                    request_id: request_id.to_owned(),
                    deadline_ms: self.limits.deadline_ms,
                });
            }
        };
        let error = if failure.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt)
        {
            PluginCallError::DeadlineExceeded {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                deadline_ms: self.limits.deadline_ms,
            }
        } else if state.limiter.limit_hit {
            PluginCallError::MemoryExhausted {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                limit_bytes: self.limits.max_memory_bytes,
                cause: describe_trap(&failure, &stderr),
            }
        } else {
            PluginCallError::Trapped {
                plugin: self.label.to_string(),
                request_id: request_id.to_owned(),
                cause: describe_trap(&failure, &stderr),
            }
        };
        Err(error)
    }

    fn new_store(
        &self,
        request_id: &str,
        secrets: CallSecrets,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
        deadline_ticks: u64,
    ) -> Store<PluginState> {
        // No preopened directories, environment, arguments or network: the only things a
        // plugin can reach are its captured stdout and stderr, randomness, and a wall clock
        // frozen at the epoch (its real clock is the request's receive time).
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock)
            .build();
        let state = PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_memory_bytes: self.limits.max_memory_bytes,
                peak_memory_bytes: 0,
                limit_hit: false,
            },
            plugin_label: self.label.clone(),
            request_id: request_id.to_owned(),
            signing_allowed: secrets.check == RequestCheck::VerifiedByHost,
            signing_refusal_reported: false,
            verify_calls_left: MAX_VERIFY_CALLS_PER_CALL,
            secrets: secrets.secrets,
            log_bytes_used: 0,
            log_bytes_limit: self.limits.max_log_bytes,
            log_limit_reported: false,
            ticks_left: deadline_ticks,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context| {
            let state = context.data_mut();
            state.ticks_left = state.ticks_left.saturating_sub(1);
            if state.ticks_left == 0 {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // tokio's own yield sends the task to the back of the run queue. wasmtime's
                // plain yield wakes the task from inside the worker, which tokio runs next
                // (its LIFO slot): a plugin spinning until its deadline would then hold a
                // worker thread, and every request queued behind it would wait.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        store
    }

    fn forward_captured_output(
        &self,
        request_id: &str,
        stdout: &CapturedOutput,
        stderr: &CapturedOutput,
    ) {
        for (stream, captured) in [("stdout", stdout), ("stderr", stderr)] {
            let text = captured.text();
            for line in text.lines().filter(|line| !line.trim().is_empty()) {
                tracing::info!(
                    target: "wasmhook::plugin",
                    plugin = %self.label,
                    request_id,
                    stream,
                    "{}",
                    escape_for_log(line, usize::MAX)
                );
            }
        }
    }
}

/// The secrets one call may use through the host imports, and whether the host verified the
/// request.
struct CallSecrets {
    secrets: Arc<[Secret]>,
    check: RequestCheck,
}

impl CallSecrets {
    /// For `describe` and `configure`, which handle no request.
    fn none() -> CallSecrets {
        CallSecrets {
            secrets: Vec::new().into(),
            check: RequestCheck::NotVerifiedByHost,
        }
    }
}

struct CallUsage {
    instantiate: Duration,
    call: Duration,
    peak_memory_bytes: usize,
    log_bytes: usize,
}

fn describe_trap(error: &wasmtime::Error, stderr: &CapturedOutput) -> String {
    // The alternate display carries the cause chain with the wasm backtrace; the debug form
    // would add the host's own native backtrace (slow to symbolize, useless to plugin authors).
    let mut cause = format!("{error:#}");
    let guest_stderr = stderr.text();
    let guest_stderr = guest_stderr.trim();
    if !guest_stderr.is_empty() {
        cause.push_str("\nplugin stderr: ");
        cause.push_str(guest_stderr);
    }
    cause
}

/// A wall clock stuck at the Unix epoch: plugins get time from the request, so that a plugin's
/// answer depends on its input alone.
struct FrozenWallClock;

impl wasmtime_wasi::HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}
