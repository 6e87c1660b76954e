//! A real PostgreSQL server on loopback for storage tests (dev-only test support): Debian's
//! PostgreSQL, a throwaway cluster per server.
//!
//! [`PgServer::start`] puts a fresh cluster in a fresh directory under `/tmp` and starts the
//! server on it with `pg_ctl`, so instances run side by side (tests run in parallel processes) and the
//! system's cluster (`/etc/postgresql`, `/var/lib/postgresql`, the `postgresql` service) is never
//! touched or needed:
//!
//! ```text
//! /tmp/spacebot-pg-<pid>-<n>-<nanos>/
//!   data/   (the cluster: a copy of the template, our settings)   run/ (the unix socket)   postgres.log   commands.log
//! ```
//!
//! The server listens on a free port of `127.0.0.1` and on a unix socket in `run/`, lets anyone
//! in without a password from those two places only (`trust`), and runs without durability
//! (`fsync`, `synchronous_commit` and `full_page_writes` off): a test database never outlives the
//! test. Each test takes a database of its own from [`PgServer::create_database`], so tests share
//! a server but never data.
//!
//! `initdb` costs most of a second, so it runs once per machine, into a template cluster under
//! `/tmp` (`/tmp/spacebot-pg-template-<format>-<version>-<uid>`, kept for the next run) that each
//! server copies; and tests use the one server of their process, [`PgServer::shared`], which
//! stops when the process ends. PostgreSQL refuses to run as
//! root: when this process is root, `initdb` and the server run as the system `postgres` user
//! (the package creates it) and the directory is handed to it. A small watchdog shell stops the
//! server and removes the directory when the test process dies or exits, so the shared server
//! (never dropped) leaves nothing behind.
//!
//! Needs the Debian package `postgresql` (any version; the newest under `/usr/lib/postgresql`
//! is used); [`PgServer::start`] panics saying so when it is missing.

use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::OnceCell;

use crate::daemons::{self, is_running, run, system_user};

/// Where Debian installs each PostgreSQL version's binaries (`<version>/bin`).
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// Names the template clusters (`Cluster::template`) of this harness: bump it when the `initdb`
/// options change, so no process copies a template made with the old ones.
const TEMPLATE_FORMAT: &str = "v1";
/// What to install when the binaries are missing.
const INSTALL_HINT: &str = "apt-get install postgresql";
/// The superuser `initdb` creates, and the user every URL names.
const SUPERUSER: &str = "postgres";
/// The system user the server runs as when this process is root.
const SYSTEM_USER: &str = "postgres";

/// How long `pg_ctl` waits for the server to accept connections, and a statement may take.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`Drop`] waits for the server to exit after telling it to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(50);
/// How many lines of the server's log [`PgServer::logs`] shows.
const LOG_TAIL_LINES: usize = 100;

/// Tells apart the instances one process starts.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);
/// Tells apart the databases one process creates (a shared server serves many tests).
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(0);
/// The process's shared server.
static SHARED: OnceCell<PgServer> = OnceCell::const_new();

/// A PostgreSQL server for tests, on a free loopback port, with its own throwaway cluster.
///
/// Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct PgServer {
    cluster: Cluster,
    /// Stops the server if this process ends without dropping `self`.
    watchdog: Option<Child>,
}

/// Where a server's files are and how its binaries run: what the blocking steps need.
#[derive(Debug, Clone)]
struct Cluster {
    dir: PathBuf,
    /// The binaries of the newest installed version.
    bin: PathBuf,
    port: u16,
    /// The uid and gid the server runs as, when this process is root and must hand it over.
    owner: Option<(u32, u32)>,
}

impl PgServer {
    /// Creates a cluster in a fresh directory and starts a server on it, returning once it
    /// accepts connections.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not installed (the message says which package to install), or when
    /// `initdb` or the server fails or does not come up within 30 seconds (the message shows what
    /// they said).
    pub async fn start() -> Self {
        let prepared = find_binaries().and_then(|bin| {
            let owner = if is_root() { Some(system_user(SYSTEM_USER, INSTALL_HINT)?) } else { None };
            Ok(Cluster { dir: create_instance_dir(owner)?, bin, port: free_port()?, owner })
        });
        let cluster = match prepared {
            Ok(cluster) => cluster,
            Err(error) => panic!("the PostgreSQL test server can't run: {error}"),
        };
        // From here on `server` owns the directory: a panic drops it, which stops the server.
        let watchdog = spawn_watchdog(&cluster.dir);
        let server = Self { cluster: cluster.clone(), watchdog };
        match tokio::task::spawn_blocking(move || cluster.start()).await {
            Ok(Ok(())) => server,
            Ok(Err(error)) => panic!("the PostgreSQL test server didn't start: {error}\n{}", server.logs()),
            Err(error) => panic!("the PostgreSQL test server's start task failed: {error}"),
        }
    }

    /// The server this test process shares: started on first use, stopped when the process ends.
    /// Take a database of its own for each test with [`create_database`](Self::create_database).
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), in every test that asks for it.
    pub async fn shared() -> &'static Self {
        SHARED.get_or_init(Self::start).await
    }

    /// Creates a new, empty database with a name no other database of this process has, and
    /// returns its URL.
    ///
    /// # Panics
    ///
    /// When the server refuses (the message shows what it said and its log).
    pub async fn create_database(&self) -> String {
        let n = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let name = format!("spacebot_{}_{n}", std::process::id());
        let cluster = self.cluster.clone();
        let statement = format!("CREATE DATABASE {name}");
        match tokio::task::spawn_blocking(move || run(&cluster.dir, &mut cluster.psql(&statement))).await {
            Ok(Ok(())) => self.url_for(&name),
            Ok(Err(error)) => panic!("can't create the test database {name}: {error}\n{}", self.logs()),
            Err(error) => panic!("the task creating the test database {name} failed: {error}"),
        }
    }

    /// The URL of database `database` on this server, as the superuser (no password: the server
    /// trusts loopback connections).
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.cluster.port)
    }

    /// The rows `query` returns in the database at `url` (one of [`create_database`]'s), each a
    /// list of its columns as text (NULL as the empty string), read through `psql`: for checks of
    /// what a daemon wrote.
    ///
    /// # Panics
    ///
    /// When the query fails (the message shows what psql said).
    ///
    /// [`create_database`]: Self::create_database
    pub async fn rows(&self, url: &str, query: &str) -> Vec<Vec<String>> {
        let database = url.rsplit('/').next().unwrap_or_default().to_owned();
        let mut command = self.cluster.psql(query);
        command.args(["--dbname", &database, "--tuples-only", "--no-align", "--field-separator", "\t"]);
        let output =
            tokio::task::spawn_blocking(move || command.output()).await.expect("the psql task").expect("psql runs");
        assert!(output.status.success(), "psql failed on {query}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| line.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// The last lines of the server's log and of the commands run, for assertion messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for file in ["postgres.log", "commands.log"] {
            let path = self.cluster.dir.join(file);
            let content = fs::read_to_string(&path).unwrap_or_else(|error| format!("({error})"));
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            text.push_str(&format!("--- {} ---\n{}\n", path.display(), tail.join("\n")));
        }
        text
    }
}

impl Cluster {
    /// A copy of the machine's template cluster, the configuration, `pg_ctl start`: blocks until
    /// the server accepts connections.
    fn start(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        let template = self.template()?;
        run(&self.dir, Command::new("cp").arg("-a").arg(&template).arg(&data))?;
        configure(&data, &self.dir.join("run"), self.port)?;
        let mut start = self.command("pg_ctl");
        start
            .arg("start")
            .arg("--pgdata")
            .arg(&data)
            .arg("--log")
            .arg(self.dir.join("postgres.log"))
            .arg("--wait")
            .arg(format!("--timeout={}", READY_TIMEOUT.as_secs()));
        run(&self.dir, &mut start)
    }

    /// The cluster `initdb` makes for this version and owner, made once per machine and copied
    /// for every server: `initdb` takes most of a second, a copy a tenth of that, and tests run
    /// one process each under nextest, each with a server of its own. Made beside this server's
    /// directory and renamed into place, so a template that exists is whole; when two processes
    /// make one at once, the first rename wins and the other copy is dropped with its directory.
    fn template(&self) -> Result<PathBuf, String> {
        let version = self.bin.parent().and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned());
        let uid = self.owner.map_or_else(current_uid, |(uid, _)| uid);
        let template =
            PathBuf::from(format!("/tmp/spacebot-pg-template-{TEMPLATE_FORMAT}-{}-{uid}", version.unwrap_or_default()));
        if template.join("PG_VERSION").is_file() {
            return Ok(template);
        }
        let staging = self.dir.join("template");
        let mut initdb = self.command("initdb");
        initdb
            .arg("--pgdata")
            .arg(&staging)
            .args(["--auth=trust", "--username", SUPERUSER, "--encoding=UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        run(&self.dir, &mut initdb)?;
        match fs::rename(&staging, &template) {
            Ok(()) => Ok(template),
            // Another process renamed its own into place first.
            Err(_) if template.join("PG_VERSION").is_file() => Ok(template),
            Err(error) => Err(format!("rename {} to {}: {error}", staging.display(), template.display())),
        }
    }

    /// `psql` running one statement as the superuser over the unix socket.
    fn psql(&self, statement: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .arg("--no-psqlrc")
            .arg("--quiet")
            .args(["--set", "ON_ERROR_STOP=1"])
            .arg("--host")
            .arg(self.dir.join("run"))
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", SUPERUSER, "--dbname", "postgres", "--command", statement])
            .env("PGCONNECT_TIMEOUT", READY_TIMEOUT.as_secs().to_string());
        command
    }

    /// A server binary, run as the server's owner.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.env_remove("PGDATA").env_remove("PGPORT").env_remove("PGHOST").current_dir(&self.dir);
        if let Some((uid, gid)) = self.owner {
            // std drops the supplementary groups when root sets a uid.
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // It may have exited already; either way it must not race the stop below.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(pid) = postmaster_pid(&self.cluster.dir.join("data")) {
            // SIGQUIT: immediate shutdown; nothing in a test database is worth a checkpoint.
            let _ = Command::new("kill").args(["-QUIT", &pid.to_string()]).stderr(Stdio::null()).status();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while is_running(pid) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        for _ in 0..10 {
            match fs::remove_dir_all(&self.cluster.dir) {
                Err(error) if error.kind() != ErrorKind::NotFound => std::thread::sleep(POLL),
                _ => break,
            }
        }
    }
}

/// The `bin` directory of the newest PostgreSQL version installed.
fn find_binaries() -> Result<PathBuf, String> {
    let missing =
        || format!("PostgreSQL is not installed (no {INSTALL_ROOT}/*/bin/postgres); install it with `{INSTALL_HINT}`");
    let entries = fs::read_dir(INSTALL_ROOT).map_err(|_| missing())?;
    let newest = entries
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres", "psql"]
                .iter()
                .all(|name| bin.join(name).is_file())
                .then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(missing)
}

fn is_root() -> bool {
    current_uid() == 0
}

/// This process's uid (the owner of its `/proc` entry); `u32::MAX` when `/proc` can't say.
fn current_uid() -> u32 {
    fs::metadata("/proc/self").map(|metadata| std::os::unix::fs::MetadataExt::uid(&metadata)).unwrap_or(u32::MAX)
}

/// Creates the instance's directory (with `run/` for the socket), owned by `owner` when given.
fn create_instance_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
    let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    // `/tmp`, not `$TMPDIR`: the `postgres` user must reach it, and the socket's path must stay
    // short (unix socket paths end at 107 bytes).
    let dir = PathBuf::from(format!("/tmp/spacebot-pg-{}-{instance}-{nanos}", std::process::id()));
    for path in [dir.clone(), dir.join("run")] {
        fs::create_dir(&path).map_err(|error| format!("create {}: {error}", path.display()))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|error| format!("chown {}: {error}", path.display()))?;
        }
    }
    Ok(dir)
}

/// Writes the server's settings and who may connect, after `initdb`.
fn configure(data: &Path, socket_dir: &Path, port: u16) -> Result<(), String> {
    let settings = format!(
        "\n# A throwaway server for one test process (spacebot-testing's pg_server).\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         unix_socket_directories = '{}'\n\
         max_connections = 200\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n",
        socket_dir.display()
    );
    let conf = data.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).map_err(|error| format!("read {}: {error}", conf.display()))?;
    text.push_str(&settings);
    fs::write(&conf, text).map_err(|error| format!("write {}: {error}", conf.display()))?;
    // Trust only the socket (in our directory) and 127.0.0.1, not ::1 or replication.
    let hba = data.join("pg_hba.conf");
    fs::write(&hba, "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        .map_err(|error| format!("write {}: {error}", hba.display()))
}

/// A free port of `127.0.0.1`, released for the server to bind.
fn free_port() -> Result<u16, String> {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| format!("can't bind 127.0.0.1:0: {error}"))
}

/// The postmaster's pid, from the first line of `postmaster.pid`.
fn postmaster_pid(data: &Path) -> Option<u32> {
    fs::read_to_string(data.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// The watchdog (see [`daemons::spawn_watchdog`]) that stops the server and removes `dir`: the
/// cleanup of the shared server, which is never dropped, and of any server whose test process
/// died.
fn spawn_watchdog(dir: &Path) -> Option<Child> {
    const CLEANUP: &str = r#"
        pid=$(head -n 1 "$2/data/postmaster.pid" 2>/dev/null) && kill -QUIT "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 1; done
        rm -rf "$2"
    "#;
    daemons::spawn_watchdog("spacebot-pg-watchdog", CLEANUP, &[dir.as_os_str()])
}
