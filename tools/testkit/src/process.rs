//! The real `wasmhook` binary as a child process: started from a config file, killed with
//! SIGKILL or stopped with SIGTERM, and restarted on the same address. The fault tests break
//! it on purpose; the load generator measures it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port")
        .local_addr()
        .expect("reading the free port")
        .port()
}

/// Where the child's log goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Log {
    /// A file beside the config, read back by [`HostProcess::log`] for failure messages.
    File,
    /// This process's stderr (the load generator's console).
    Inherit,
}

/// How a [`HostProcess`] is started, and what dropping it does.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// The `wasmhook` executable.
    pub binary: PathBuf,
    /// Extra `serve` arguments, e.g. `--no-worker`.
    pub arguments: Vec<String>,
    /// `WASMHOOK_LOG`.
    pub log_level: String,
    pub log: Log,
    /// How long the host may take to answer `/readyz` after each start.
    pub ready_within: Duration,
    /// Dropping the process stops it with SIGTERM and waits for it (a measured host's clean
    /// exit) instead of killing it at once (a test that is over).
    pub terminate_on_drop: bool,
}

impl HostOptions {
    /// What the tests use: `info` logs in a file, a minute to get ready, SIGKILL on drop.
    pub fn new(binary: &Path, arguments: &[&str]) -> HostOptions {
        HostOptions {
            binary: binary.to_owned(),
            arguments: arguments
                .iter()
                .map(|argument| argument.to_string())
                .collect(),
            log_level: "info".to_owned(),
            log: Log::File,
            ready_within: Duration::from_secs(60),
            terminate_on_drop: false,
        }
    }
}

pub struct HostProcess {
    child: Option<Child>,
    pub address: SocketAddr,
    options: HostOptions,
    config_path: PathBuf,
    log_path: PathBuf,
    _directory: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `wasmhook serve` with `config_text` (its `listen = "127.0.0.1:0"` replaced by a
    /// free port) and waits until it is ready.
    pub async fn start(config_text: &str, options: HostOptions) -> HostProcess {
        let directory = tempfile::Builder::new()
            .prefix("wasmhook-host")
            .tempdir()
            .expect("creating the host's directory");
        let address: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("a socket address");
        let config_path = directory.path().join("wasmhook.toml");
        std::fs::write(
            &config_path,
            config_text.replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{address}\""),
            ),
        )
        .expect("writing the host's config");
        let mut host = HostProcess {
            child: None,
            address,
            options,
            log_path: directory.path().join("host.log"),
            config_path,
            _directory: directory,
        };
        host.spawn().await;
        host
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(&self.options.binary);
        command
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.options.arguments)
            .env("WASMHOOK_LOG", &self.options.log_level);
        match self.options.log {
            Log::File => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log_path)
                    .expect("opening the host's log");
                let stderr = log.try_clone().expect("sharing the host's log");
                command.stdout(Stdio::from(log)).stderr(Stdio::from(stderr));
            }
            Log::Inherit => {
                command.stdout(Stdio::null()).stderr(Stdio::inherit());
            }
        }
        let child = command.spawn().expect("the wasmhook binary starts");
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + self.options.ready_within;
        while Instant::now() < deadline {
            let child = self.child.as_mut().expect("the host was started");
            if let Some(status) = child.try_wait().expect("reading the host's status") {
                panic!("the host exited with {status}:\n{}", self.log());
            }
            let ready = client
                .get(self.url("/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the host was not ready within {:?}:\n{}",
            self.options.ready_within,
            self.log()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// What the host logged (with [`Log::File`]), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the host at once, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("killing the host");
            child.wait().expect("reaping the host");
        }
    }

    /// Sends SIGTERM and waits (at most half a minute) for the host to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the host runs");
        send_sigterm(&child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("reading the host's status") {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().expect("killing the host");
                panic!(
                    "the host did not exit within 30 s of SIGTERM:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the host again, on the same address with the same config.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the host still runs");
        self.spawn().await;
    }

    /// SIGTERM, then at most 30 s for a clean exit before SIGKILL; blocking, for `Drop`.
    fn terminate_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_sigterm(&child);
        for _ in 0..300 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn send_sigterm(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if self.options.terminate_on_drop {
            self.terminate_blocking();
        } else if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
