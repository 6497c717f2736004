//! The real `wasmhook` binary as a child process, for the fault tests: started from a config
//! file, killed with SIGKILL or stopped with SIGTERM, and restarted on the same address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct HostProcess {
    child: Option<Child>,
    pub address: SocketAddr,
    arguments: Vec<String>,
    config_path: PathBuf,
    log_path: PathBuf,
    _directory: tempfile::TempDir,
}

impl HostProcess {
    /// Starts `wasmhook serve` with `config_text` (its listen address replaced by a free port)
    /// and `arguments` (e.g. `--no-worker`), and waits until it is ready.
    pub async fn start(config_text: &str, arguments: &[&str]) -> HostProcess {
        let directory = tempfile::tempdir().unwrap();
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config_path = directory.path().join("wasmhook.toml");
        std::fs::write(
            &config_path,
            config_text.replace(
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"{address}\""),
            ),
        )
        .unwrap();
        let mut host = HostProcess {
            child: None,
            address,
            arguments: arguments
                .iter()
                .map(|argument| argument.to_string())
                .collect(),
            log_path: directory.path().join("host.log"),
            config_path,
            _directory: directory,
        };
        host.spawn().await;
        host
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .args(&self.arguments)
            .env("WASMHOOK_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the wasmhook binary starts");
        self.child = Some(child);
        self.wait_until_ready().await;
    }

    async fn wait_until_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
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
        panic!("the host was not ready within a minute:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// What the host logged, for failure messages.
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
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends SIGTERM and waits (at most half a minute) for the host to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the host runs");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
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
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
