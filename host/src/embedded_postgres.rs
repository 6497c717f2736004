//! A PostgreSQL server of the host's own, run from the machine's server binaries when no
//! database URL is configured (and by the test harness for throwaway clusters).
//!
//! The cluster lives in `<dir>/pg`, listens on a unix socket in `<dir>/run` only, and is
//! stopped by the PID in its `postmaster.pid`. PostgreSQL refuses to run as root, so when the
//! host runs as root the server runs as the unprivileged `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

const PORT: u16 = 5432;

/// Options for a cluster that differ between production and tests.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Turn off fsync: only for throwaway test clusters, never for data that must survive.
    pub throwaway: bool,
}

/// A running PostgreSQL cluster owned by this process.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<nix::unistd::User>,
    options: ClusterOptions,
}

impl EmbeddedPostgres {
    /// Initializes the cluster on first use, starts it (or adopts one already running from
    /// an earlier process of ours), and waits until it accepts connections.
    pub fn start(dir: &Path, options: ClusterOptions) -> anyhow::Result<EmbeddedPostgres> {
        let bin_dir = find_server_binaries()?;
        let dir = std::path::absolute(dir).context("resolving the data directory")?;
        let run_as = unprivileged_user()?;
        let data_dir = dir.join("pg");
        let socket_dir = dir.join("run");
        for path in [&dir, &socket_dir] {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        if let Some(user) = &run_as {
            // The server's user must reach the directory and own its socket directory.
            check_ancestors_searchable(&dir)?;
            make_traversable(&dir)?;
            nix::unistd::chown(&socket_dir, Some(user.uid), Some(user.gid)).with_context(|| {
                format!("handing {} to the postgres user", socket_dir.display())
            })?;
        }
        let cluster = EmbeddedPostgres {
            data_dir,
            socket_dir,
            bin_dir,
            run_as,
            options,
        };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initialize()?;
        }
        if cluster.running_pid().is_none() {
            cluster.start_server()?;
        }
        Ok(cluster)
    }

    /// The directory of the server's unix socket, for connection options.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A URL for `database` on this cluster, as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{PORT}/{database}?host={}",
            self.socket_dir.display()
        )
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        if let Some(user) = &self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        command.env_remove("PGDATA").env("LC_ALL", "C");
        command
    }

    fn initialize(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating {}", self.data_dir.display()))?;
        if let Some(user) = &self.run_as {
            nix::unistd::chown(&self.data_dir, Some(user.uid), Some(user.gid)).with_context(
                || format!("handing {} to the postgres user", self.data_dir.display()),
            )?;
        }
        let mut command = self.command("initdb");
        command.arg("--pgdata").arg(&self.data_dir).args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
        ]);
        if self.options.throwaway {
            command.arg("--no-sync");
        }
        run_quietly(command, "initdb")
    }

    fn start_server(&self) -> anyhow::Result<()> {
        let mut server_options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT} -c max_connections=200",
            self.socket_dir.display()
        );
        if self.options.throwaway {
            server_options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        let mut command = self.command("pg_ctl");
        command
            .arg("start")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .args(["--wait", "--timeout=60", "--silent"])
            .arg("--log")
            .arg(self.data_dir.join("server.log"))
            .arg("-o")
            .arg(server_options);
        run_quietly(command, "pg_ctl start")
    }

    /// The postmaster's PID if it is running.
    fn running_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        alive.then_some(pid)
    }

    /// Stops the server by the PID in `postmaster.pid` (fast shutdown) and waits, at most
    /// 30 seconds, for it to exit.
    pub fn stop(&self) -> anyhow::Result<()> {
        let Some(pid) = self.running_pid() else {
            return Ok(());
        };
        stop_postmaster(pid);
        if self.running_pid().is_some() {
            bail!("PostgreSQL (pid {pid}) did not stop within 30 s");
        }
        Ok(())
    }

    /// Starts the server again after `stop` (used by outage tests).
    pub fn restart(&self) -> anyhow::Result<()> {
        if self.running_pid().is_none() {
            self.start_server()?;
        }
        Ok(())
    }

    /// The PID of the running postmaster, for stopping it from contexts that cannot hold this
    /// value (such as an exit handler).
    pub fn pid(&self) -> Option<i32> {
        self.running_pid()
    }
}

/// Sends a fast-shutdown signal to a postmaster and waits (bounded) for it to exit.
pub fn stop_postmaster(pid: i32) {
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    for _ in 0..300 {
        if nix::sys::signal::kill(pid, None).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_quietly(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Adds search (execute) permission for everyone on `dir`, so a server running as another
/// user can reach its data and socket directories inside it.
fn make_traversable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut permissions = metadata.permissions();
    permissions.set_mode(permissions.mode() | 0o711);
    std::fs::set_permissions(dir, permissions)
        .with_context(|| format!("making {} traversable", dir.display()))
}

/// Fails clearly when a directory above `dir` keeps other users out, since the server runs as
/// another user and could not reach its data.
fn check_ancestors_searchable(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(ancestor) else {
            continue;
        };
        if metadata.permissions().mode() & 0o001 == 0 {
            bail!(
                "the postgres user cannot reach {}: {} is not searchable by other users (chmod o+x it, or choose another data_dir)",
                dir.display(),
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// When running as root, the user PostgreSQL runs as.
fn unprivileged_user() -> anyhow::Result<Option<nix::unistd::User>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name("postgres").context("looking up the postgres user")? {
        Some(user) => Ok(Some(user)),
        None => bail!(
            "PostgreSQL refuses to run as root and there is no `postgres` user to run it as: create one, run wasmhook as another user, or set database.url"
        ),
    }
}

/// Finds the directory with `initdb` and `pg_ctl`: PATH, `pg_config --bindir`, then the
/// newest `/usr/lib/postgresql/*/bin`.
pub fn find_server_binaries() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    bail!(
        "no PostgreSQL server binaries (initdb, pg_ctl) found: install the PostgreSQL server (Debian: apt-get install postgresql) or set database.url"
    )
}
