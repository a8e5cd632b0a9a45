//! A replicated PostgreSQL cluster built for one test: a primary `initdb`'d on a free loopback
//! port in a temporary directory and a standby copied from it with `pg_basebackup -R`,
//! streaming with synchronous replication (`synchronous_standby_names` names it,
//! `synchronous_commit = on`), both started with `pg_ctl`, and stopped (`-m immediate`) and
//! removed when the [`Cluster`] is dropped, a panicking test included. No mocks.
//!
//! The server programs come from `PATH`, else the newest `/usr/lib/postgresql/*/bin`. They
//! refuse to run as root: as root, the harness runs them as the `postgres` user, owner of the
//! cluster's directory. Without the programs (or that user) the tests print "skipped: ..." and
//! pass, unless `STRONGBOX_REQUIRE_POSTGRES=1` (which `.ci/run` sets) makes them fail.

mod failover;
mod replicas;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The standby's `application_name`, which the primary's `synchronous_standby_names` names.
const STANDBY_NAME: &str = "strongbox_standby";

/// The programs the harness runs.
const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "pg_basebackup"];

/// One server of the cluster.
pub struct Node {
    pub port: u16,
    pub data: PathBuf,
    /// Whether its postmaster may be gone while its backends linger (it was SIGKILLed), so
    /// that teardown kills its process group too.
    was_killed: bool,
}

/// A primary and a synchronous standby, torn down on drop.
pub struct Cluster {
    pub primary: Node,
    pub standby: Node,
    bin: PathBuf,
    /// As root: the unprivileged user the server programs run as.
    run_as: Option<String>,
    dir: TempDir,
}

/// Whether a missing cluster fails the tests instead of skipping them.
fn required() -> bool {
    std::env::var_os("STRONGBOX_REQUIRE_POSTGRES")
        .is_some_and(|value| !value.is_empty() && value != "0")
}

/// The directory holding every program of [`PROGRAMS`]: a `PATH` entry, else the newest
/// `/usr/lib/postgresql/*/bin`. A program found on `PATH` may be a symbolic link: pg_ctl and
/// initdb find `postgres` beside their real path.
fn find_programs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut candidates: Vec<PathBuf> = std::env::split_paths(&path).collect();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort();
    candidates.extend(versioned.into_iter().rev().map(|(_, bin)| bin));
    candidates
        .into_iter()
        .find(|dir| PROGRAMS.iter().all(|program| dir.join(program).is_file()))
}

/// Says why the cluster tests cannot run: fails under `STRONGBOX_REQUIRE_POSTGRES`, else
/// prints "skipped: ..." past the test harness's capture.
fn unavailable(why: &str) {
    assert!(
        !required(),
        "{why}, and STRONGBOX_REQUIRE_POSTGRES is set (install the PostgreSQL server programs)"
    );
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Cluster {
    /// A running cluster whose standby streams synchronously; `None` (having said why) when
    /// the server programs are missing and not required.
    pub async fn start() -> Option<Cluster> {
        let Some(bin) = find_programs() else {
            unavailable(
                "no PostgreSQL server programs (initdb, pg_ctl, pg_basebackup) on PATH or in /usr/lib/postgresql/*/bin",
            );
            return None;
        };
        let run_as = if is_root() {
            if !user_exists("postgres") {
                unavailable("running as root, and no `postgres` user to run the servers as");
                return None;
            }
            Some("postgres".to_owned())
        } else {
            None
        };
        let dir = tempfile::tempdir().unwrap();
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args([user.as_str(), &dir.path().display().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's directory to {user}");
        }
        let mut cluster = Cluster {
            primary: Node::new(dir.path(), "primary"),
            standby: Node::new(dir.path(), "standby"),
            bin,
            run_as,
            dir,
        };
        // Blocking work (initdb and friends) off the runtime's workers.
        cluster = tokio::task::spawn_blocking(move || {
            cluster.build();
            cluster
        })
        .await
        .unwrap();
        cluster.wait_for_sync_standby().await;
        Some(cluster)
    }

    /// `initdb`, configure and start the primary; copy, configure and start the standby.
    fn build(&mut self) {
        let primary = self.primary.data.display().to_string();
        self.run(
            "initdb",
            &[
                "-D",
                &primary,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
             wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n\
             synchronous_standby_names = '{STANDBY_NAME}'\nsynchronous_commit = on\n\
             shared_buffers = 16MB\nmax_connections = 80\n\
             # A SIGKILL keeps the page cache: fsync would only slow the test down.\n\
             fsync = off\n",
            port = self.primary.port
        );
        self.append(&self.primary.data.join("postgresql.conf"), &settings);
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n\
                   local replication all trust\nhost replication all 127.0.0.1/32 trust\n";
        std::fs::write(self.primary.data.join("pg_hba.conf"), hba).unwrap();
        self.pg_ctl_start(&self.primary.data);

        let standby = self.standby.data.display().to_string();
        let port = self.primary.port.to_string();
        self.run(
            "pg_basebackup",
            &[
                "-D",
                &standby,
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        // Later lines of postgresql.auto.conf win. The standby names itself as the primary's
        // synchronous standby; once promoted, it has no standby of its own to wait for.
        let standby_settings = format!(
            "port = {}\nprimary_conninfo = 'host=127.0.0.1 port={port} user=postgres \
             application_name={STANDBY_NAME}'\nsynchronous_standby_names = ''\n",
            self.standby.port
        );
        self.append(
            &self.standby.data.join("postgresql.auto.conf"),
            &standby_settings,
        );
        self.pg_ctl_start(&self.standby.data);
    }

    /// Waits (at most 30 s) until the primary reports the standby streaming as `sync`.
    async fn wait_for_sync_standby(&self) {
        let client = connect(self.primary.port).await;
        let started = Instant::now();
        loop {
            let rows = client
                .query(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                    &[&STANDBY_NAME],
                )
                .await
                .unwrap();
            if rows.first().map(|row| row.get::<_, String>(0)).as_deref() == Some("sync") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby never streamed synchronously"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The multi-host URL: the primary first, then the standby, connecting to whichever takes
    /// writes.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.primary.port, self.standby.port
        )
    }

    /// The URL of one node alone.
    pub fn node_url(node: &Node) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", node.port)
    }

    /// Lets the primary commit without waiting for the standby (`synchronous_standby_names`
    /// emptied and reloaded), so that it keeps taking writes while the standby is down.
    pub async fn make_replication_asynchronous(&self) {
        let client = connect(self.primary.port).await;
        client
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            .await
            .unwrap();
        client
            .execute("SELECT pg_reload_conf()", &[])
            .await
            .unwrap();
    }

    /// Stops the standby at once (`pg_ctl stop -m immediate`), as a crash that leaves its port
    /// refusing connections.
    pub fn stop_standby(&self) {
        let standby = self.standby.data.display().to_string();
        self.run("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &standby]);
    }

    /// SIGKILLs the primary's postmaster (the first line of its `postmaster.pid`), as a crash.
    pub fn kill_primary(&mut self) {
        let pid = postmaster_pid(&self.primary.data).expect("the primary runs");
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {pid}");
        self.primary.was_killed = true;
    }

    /// Promotes the standby (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote_standby(&self) {
        let standby = self.standby.data.display().to_string();
        self.run("pg_ctl", &["promote", "-w", "-t", "30", "-D", &standby]);
    }

    fn pg_ctl_start(&self, data: &Path) {
        let data_arg = data.display().to_string();
        let log = data.with_extension("log").display().to_string();
        self.run(
            "pg_ctl",
            &["start", "-w", "-t", "30", "-D", &data_arg, "-l", &log],
        );
    }

    /// Runs a server program (as the unprivileged user when root), failing the test with its
    /// output when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let output = self.command(program, args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        };
        // The unprivileged user may not read the test's working directory.
        command.args(args).current_dir(self.dir.path());
        command
    }

    /// Appends to a configuration file the server programs wrote.
    fn append(&self, file: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new().append(true).open(file).unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in [&self.standby, &self.primary] {
            if node.was_killed {
                // pg_ctl cannot stop a server without its postmaster: end its backends, which
                // share the postmaster's process group (pg_ctl starts it with setsid).
                if let Some(pid) = postmaster_pid(&node.data) {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .output();
                }
            } else if postmaster_pid(&node.data).is_some() {
                let data = node.data.display().to_string();
                let _ = self
                    .command("pg_ctl", &["stop", "-m", "immediate", "-w", "-D", &data])
                    .output();
            }
        }
    }
}

impl Node {
    fn new(dir: &Path, name: &str) -> Node {
        Node {
            port: free_port(),
            data: dir.join(name),
            was_killed: false,
        }
    }
}

/// The first line of a data directory's `postmaster.pid`, when it has one (still there after
/// a SIGKILL).
fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn is_root() -> bool {
    let output = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .args(["-u", user])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// A connection to one node's `postgres` database; its driver task ends with the client.
pub async fn connect(port: u16) -> tokio_postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
