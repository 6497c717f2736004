//! A PostgreSQL server of the host's own, run from the machine's server binaries when no
//! database URL is configured (and by the test harness for throwaway clusters).
//!
//! The cluster lives in `<dir>/pg`, listens on a unix socket in `<dir>/run` only, and is
//! stopped by the PID in its `postmaster.pid`. PostgreSQL refuses to run as root, so when the
//! host runs as root the server runs as the unprivileged `postgres` user.
//!
//! Only the host's own OS user may connect: the data and socket directories are 0700 (owned by
//! the server's user), the socket is 0700, and `pg_hba.conf` admits nobody but the host's user,
//! by peer authentication mapped to the `postgres` role, so there is no password to keep or
//! leak. Root reaches the 0700 socket as the server's user's equal; an unprivileged host runs
//! the server as itself.

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
    /// Load `pg_stat_statements`, which counts every statement the hosts send: only for the
    /// benchmark's clusters, which report statements per webhook.
    pub statement_statistics: bool,
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
        // Other users may pass through the top directory to nothing they can open: what is
        // inside is private to the host's user or to the server's.
        set_mode(&socket_dir, 0o700)?;
        set_mode(&dir, if run_as.is_some() { 0o711 } else { 0o700 })?;
        if let Some(user) = &run_as {
            // The server's user must reach the directory and own its socket directory.
            check_ancestors_searchable(&dir)?;
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
        // Written at every start, so that a cluster initialized by an older host (which let
        // every local user in) is closed as well.
        cluster.write_authentication_rules()?;
        set_mode(&cluster.data_dir, 0o700)?;
        if cluster.running_pid().is_none() {
            cluster.start_server()?;
        } else {
            cluster.reload_server()?;
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
            "--auth-local=peer",
            "--auth-host=reject",
            "--encoding=UTF8",
        ]);
        if self.options.throwaway {
            command.arg("--no-sync");
        }
        run_quietly(command, "initdb")
    }

    fn start_server(&self) -> anyhow::Result<()> {
        let mut server_options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c unix_socket_permissions=0700 -p {PORT} -c max_connections=200",
            self.socket_dir.display()
        );
        if self.options.throwaway {
            server_options.push_str(" -c fsync=off -c full_page_writes=off");
        }
        if self.options.statement_statistics {
            server_options.push_str(
                " -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all",
            );
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

    /// Admits only the host's OS user, as the `postgres` role, over the unix socket; every
    /// other connection is rejected.
    fn write_authentication_rules(&self) -> anyhow::Result<()> {
        let host_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .context("looking up the host's user")?
            .context("the host's user id has no name, which peer authentication needs")?;
        let hba = "# Written by wasmhook at every start: only the host's own OS user may connect.\n\
                   local all postgres peer map=wasmhook\n\
                   local all all reject\n\
                   host all all all reject\n";
        let ident = format!(
            "# Written by wasmhook at every start: the host's OS user connects as postgres.\n\
             wasmhook {} postgres\n",
            host_user.name
        );
        for (name, text) in [("pg_hba.conf", hba), ("pg_ident.conf", ident.as_str())] {
            self.replace_file(name, text)?;
        }
        Ok(())
    }

    /// Replaces a file of the data directory with a new one, never writing through what is
    /// there: the directory belongs to the server's user, and whoever had superuser there (as
    /// every local user had under an older host) may have made the file a symlink to a file
    /// of root's. The new file is created exclusively (no symlink followed), handed to the
    /// server's user with mode 0600, then renamed over the old name.
    fn replace_file(&self, name: &str, text: &str) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data_dir.join(name);
        let mut temporary = tempfile::NamedTempFile::new_in(&self.data_dir)
            .with_context(|| format!("creating a new {}", path.display()))?;
        std::io::Write::write_all(&mut temporary, text.as_bytes())
            .with_context(|| format!("writing a new {}", path.display()))?;
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("making the new {} private", path.display()))?;
        if let Some(user) = &self.run_as {
            nix::unistd::fchown(
                std::os::fd::AsRawFd::as_raw_fd(temporary.as_file()),
                Some(user.uid),
                Some(user.gid),
            )
            .with_context(|| format!("handing the new {} to the postgres user", path.display()))?;
        }
        temporary
            .persist(&path)
            .with_context(|| format!("renaming the new {} into place", path.display()))?;
        Ok(())
    }

    /// Makes a running server (adopted from an earlier process) read the rules just written.
    fn reload_server(&self) -> anyhow::Result<()> {
        let mut command = self.command("pg_ctl");
        command
            .arg("reload")
            .arg("--pgdata")
            .arg(&self.data_dir)
            .arg("--silent");
        run_quietly(command, "pg_ctl reload")
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

fn set_mode(dir: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the permissions of {} to {mode:o}", dir.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `program` with `arguments` as the `nobody` user and returns whether it succeeded,
    /// with its stderr.
    fn run_as_nobody(program: &Path, arguments: &[&str]) -> (bool, String) {
        let output = Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .arg(program)
            .args(arguments)
            .env("HOME", "/tmp")
            .output()
            .expect("runuser runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn psql_arguments(cluster: &EmbeddedPostgres) -> Vec<String> {
        vec![
            "--no-psqlrc".to_owned(),
            "--host".to_owned(),
            cluster.socket_dir().display().to_string(),
            "--port".to_owned(),
            PORT.to_string(),
            "--username=postgres".to_owned(),
            "--dbname=postgres".to_owned(),
            "--command=SELECT 1".to_owned(),
        ]
    }

    #[test]
    fn another_local_user_can_neither_connect_to_nor_read_the_cluster() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test runs commands as the `nobody` user, so it must run as root (as make test does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("wasmhook-private-pg")
            .tempdir()
            .unwrap();
        let cluster = EmbeddedPostgres::start(
            dir.path(),
            ClusterOptions {
                throwaway: true,
                ..ClusterOptions::default()
            },
        )
        .expect("the cluster starts");
        // Debian keeps psql beside the server binaries; other layouts have it on PATH.
        let psql = Some(cluster.bin_dir.join("psql"))
            .filter(|path| path.is_file())
            .unwrap_or_else(|| PathBuf::from("psql"));
        let arguments = psql_arguments(&cluster);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();

        let host = Command::new(&psql)
            .args(&arguments)
            .output()
            .expect("psql runs");
        let (other_connected, other_error) = run_as_nobody(&psql, &arguments);
        let (other_listed_sockets, _) = run_as_nobody(
            Path::new("ls"),
            &[&cluster.socket_dir().display().to_string()],
        );
        let hba = cluster.data_dir.join("pg_hba.conf");
        let (other_read_rules, _) = run_as_nobody(Path::new("cat"), &[&hba.display().to_string()]);
        cluster.stop().unwrap();

        assert!(
            host.status.success(),
            "the host's user connects: {}",
            String::from_utf8_lossy(&host.stderr)
        );
        assert!(!other_connected, "nobody connected to the cluster");
        assert!(
            other_error.contains("Permission denied"),
            "refused at the socket: {other_error}"
        );
        assert!(!other_listed_sockets, "nobody listed the socket directory");
        assert!(!other_read_rules, "nobody read the data directory");
    }
}
