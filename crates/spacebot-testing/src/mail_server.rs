//! Real mail servers on loopback for email tests (dev-only test support): Debian's Dovecot (IMAP
//! with IDLE, and LMTP) and Debian's Postfix (SMTP).
//!
//! [`MailServer::start`] gives each instance a throwaway directory under `/tmp` holding everything
//! it writes, so instances run side by side (tests run in parallel processes) and never touch the
//! system's mail setup (`/etc/dovecot`, `/etc/postfix`, `/run/dovecot`, `/var/spool/postfix` and
//! the system services are left alone):
//!
//! ```text
//! /tmp/spacebot-mail-<pid>-<n>-<nanos>/
//!   dovecot/dovecot.conf   dovecot/users/<user> (passwd-files)   dovecot/run/ (base_dir)   dovecot/state/
//!   postfix/{main,master}.cf (config_directory)   queue/ (queue_directory)   data/ (data_directory)
//!   mail/<user>/Maildir/   dovecot.log   postfix.log   commands.log
//! ```
//!
//! Mail for `*@example.test` submitted to Postfix's SMTP listener (no TLS, no auth, relaying for
//! `127.0.0.0/8`) goes to Dovecot over LMTP on a loopback port and lands in the user's Maildir,
//! owned by the system `mail` user. Users log into IMAP with plaintext passwords from a
//! passwd-file per user: Dovecot stats a passwd-file at most once a second, so one shared file
//! would hide a user added within a second of the last lookup, while a new user's file is a path
//! Dovecot has never read. All three ports are free loopback ports picked at start.
//!
//! The design choice worth knowing: both servers are the distribution's own binaries, started
//! with `dovecot -c CONF` and `postfix -c DIR start` on configurations written here. Postfix runs a
//! second instance from any `-c` directory when root starts it (no `alternate_config_directories`
//! needed: that only guards the set-gid `postdrop`/`postqueue`, which nothing here uses), and its
//! own `post-install create-missing` builds the queue tree with the right owners. Both daemonise;
//! [`Drop`] stops them, and a small watchdog shell stops them too if the test process dies without
//! dropping (killed by a timeout, say).
//!
//! Needs root (Dovecot switches to the `mail` user, Postfix to `postfix`) and the Debian packages
//! `dovecot-imapd dovecot-lmtpd postfix`; [`MailServer::start`] panics saying which is missing.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::daemons::{self, is_running, run, system_user};

/// The mail domain the servers accept: every address is `local_part@example.test`.
pub const DOMAIN: &str = "example.test";

/// Dovecot's master binary (package `dovecot-core`, pulled in by `dovecot-imapd`).
const DOVECOT: &str = "/usr/sbin/dovecot";
/// Postfix's control command (package `postfix`).
const POSTFIX: &str = "/usr/sbin/postfix";
/// Dovecot's IMAP and LMTP servers (packages `dovecot-imapd`, `dovecot-lmtpd`).
const DOVECOT_SERVICES: [&str; 2] = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/lmtp"];
/// What to install when a binary is missing.
const INSTALL_HINT: &str = "apt-get install dovecot-imapd dovecot-lmtpd postfix";

/// How long [`MailServer::start`] waits for the servers to listen, and [`MailServer::send`] for
/// the SMTP conversation.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How often waits poll.
const POLL: Duration = Duration::from_millis(50);
/// How many log lines of each server [`MailServer::logs`] shows.
const LOG_TAIL_LINES: usize = 100;

/// Tells apart the instances one process starts.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Mail servers for one test: Postfix taking SMTP, Dovecot serving IMAP, on free loopback ports.
///
/// Dropping it stops both servers and removes its directory.
#[derive(Debug)]
pub struct MailServer {
    dir: PathBuf,
    imap: SocketAddr,
    smtp: SocketAddr,
    /// The uid and gid owning the mail (the system `mail` user).
    mail_owner: (u32, u32),
    /// Serialises writes to the passwd-files.
    users: Mutex<()>,
    /// Stops the servers if this process dies without dropping `self`.
    watchdog: Option<Child>,
}

/// One message in a user's INBOX, as Dovecot stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMail {
    /// The whole message as stored (Dovecot stores LF line endings and adds `Return-Path`,
    /// `Delivered-To` and `Received` headers on delivery).
    pub raw: String,
    /// Whether it carries the `S` (`\Seen`) Maildir flag.
    pub seen: bool,
    /// Its Maildir file name (flags included, after `:2,`).
    pub file: String,
}

impl StoredMail {
    /// The first header named `name` (case-insensitive), unfolded and trimmed.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut lines = self.header_block().lines().map(|line| line.trim_end_matches('\r')).peekable();
        while let Some(line) = lines.next() {
            let Some((field, value)) = line.split_once(':') else { continue };
            if !field.trim_end().eq_ignore_ascii_case(name) || field.starts_with([' ', '\t']) {
                continue;
            }
            let mut value = value.to_owned();
            while let Some(next) = lines.next_if(|next| next.starts_with([' ', '\t'])) {
                value.push_str(next);
            }
            return Some(value.trim().to_owned());
        }
        None
    }

    /// Everything after the blank line ending the header (empty when there is none).
    pub fn body(&self) -> String {
        let header = self.header_block();
        let rest = &self.raw[header.len()..];
        rest.strip_prefix("\r\n").or_else(|| rest.strip_prefix('\n')).unwrap_or(rest).to_owned()
    }

    /// The header lines, up to and including the line ending before the blank line.
    fn header_block(&self) -> &str {
        let mut offset = 0;
        for line in self.raw.split_inclusive('\n') {
            if line.trim_end_matches(['\r', '\n']).is_empty() {
                return &self.raw[..offset];
            }
            offset += line.len();
        }
        &self.raw
    }
}

impl MailServer {
    /// Starts Dovecot and Postfix on free ports of `127.0.0.1`, each on a fresh configuration, and
    /// returns once both accept connections.
    ///
    /// # Panics
    ///
    /// When the packages are missing (the message says what to install), when not running as
    /// root, or when a server doesn't start or listen within 15 seconds (the message shows the
    /// servers' output and logs).
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// Like [`start`](Self::start), but Dovecot does not offer IDLE, so a client must fall back
    /// to checking the mailbox now and then.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub async fn start_without_idle() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(idle: bool) -> Self {
        let prepared = preflight().and_then(|()| {
            let mail_owner = system_user("mail", INSTALL_HINT)?;
            let ports = free_ports()?;
            Ok((mail_owner, ports, create_instance_dir()?))
        });
        let (mail_owner, [imap, lmtp, smtp], dir) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => panic!("the mail server harness can't run: {error}"),
        };
        // From here on `server` owns the directory: a panic drops it, which stops whatever started.
        let mut server = Self {
            dir,
            imap: SocketAddr::from((Ipv4Addr::LOCALHOST, imap)),
            smtp: SocketAddr::from((Ipv4Addr::LOCALHOST, smtp)),
            mail_owner,
            users: Mutex::new(()),
            watchdog: None,
        };
        let lmtp = SocketAddr::from((Ipv4Addr::LOCALHOST, lmtp));
        if let Err(error) = server.configure(lmtp, idle) {
            panic!("can't write the mail servers' configuration in {}: {error}", server.dir.display());
        }
        server.watchdog = spawn_watchdog(&server.dir);

        let dir = server.dir.clone();
        let started = tokio::task::spawn_blocking(move || {
            run(&dir, Command::new(DOVECOT).arg("-c").arg(dir.join("dovecot/dovecot.conf")))?;
            run(&dir, Command::new(POSTFIX).arg("-c").arg(dir.join("postfix")).arg("start"))
        })
        .await;
        match started {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the mail servers didn't start: {error}\n{}", server.logs()),
            Err(error) => panic!("the mail servers' start task failed: {error}"),
        }

        let deadline = Instant::now() + READY_TIMEOUT;
        for (name, addr) in [("Dovecot IMAP", server.imap), ("Dovecot LMTP", lmtp), ("Postfix SMTP", server.smtp)] {
            while TcpStream::connect(addr).await.is_err() {
                if Instant::now() >= deadline {
                    panic!("{name} isn't listening on {addr} after {READY_TIMEOUT:?}\n{}", server.logs());
                }
                tokio::time::sleep(POLL).await;
            }
        }
        server
    }

    /// Creates the user `local_part` (lowercased) with `password`, or changes their password, and
    /// returns their address `local_part@example.test`. Dovecot sees a new user at once; changing
    /// a password blocks for up to a second, until Dovecot is sure to see it.
    ///
    /// # Panics
    ///
    /// When `local_part` isn't letters, digits, `.`, `_`, `-` and `+`, when `password` holds `:` or
    /// a line break, or when the files can't be written.
    pub fn add_user(&self, local_part: &str, password: &str) -> String {
        let user = checked_local_part(local_part);
        assert!(
            !password.contains([':', '\n', '\r']) && !password.is_empty(),
            "a mail test password is non-empty and holds no ':' or line break: {password:?}"
        );
        if let Err(error) = self.write_user(&user, password) {
            panic!("can't add the mail user {user}: {error}");
        }
        format!("{user}@{DOMAIN}")
    }

    /// Where Dovecot serves IMAP (plaintext, `LOGIN` allowed, `IDLE` supported).
    pub fn imap_addr(&self) -> SocketAddr {
        self.imap
    }

    /// Where Postfix takes SMTP (no TLS, no auth; relays for loopback clients).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp
    }

    /// Submits `raw`, a whole RFC 5322 message (LF or CRLF line endings), from `from` to `to`
    /// over SMTP, and returns once Postfix has queued it. Delivery follows within moments: wait
    /// for it with [`MailServer::wait_for_mail`].
    ///
    /// # Panics
    ///
    /// When Postfix answers a command with anything but 2xx or 3xx (the message shows the command
    /// and the answer), or the conversation fails or takes over 15 seconds.
    pub async fn send(&self, from: &str, to: &str, raw: &str) {
        match tokio::time::timeout(READY_TIMEOUT, submit(self.smtp, from, to, raw)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("SMTP submission to {} failed: {error}\n{}", self.smtp, self.logs()),
            Err(_) => panic!("SMTP submission to {} took over {READY_TIMEOUT:?}\n{}", self.smtp, self.logs()),
        }
    }

    /// The messages in the INBOX of `local_part`, read from its Maildir (`new/` and `cur/`), in
    /// delivery order. Empty for an unknown user.
    ///
    /// # Panics
    ///
    /// When the Maildir can't be read.
    pub fn mailbox(&self, local_part: &str) -> Vec<StoredMail> {
        let maildir = self.maildir(&checked_local_part(local_part));
        match read_maildir(&maildir) {
            Ok(mails) => mails,
            Err(error) => panic!("can't read the Maildir {}: {error}", maildir.display()),
        }
    }

    /// Waits until the INBOX of `local_part` holds at least `count` messages, polling every
    /// 50 ms, and returns them all.
    ///
    /// # Panics
    ///
    /// After `timeout`, showing how many arrived and the servers' logs.
    pub async fn wait_for_mail(&self, local_part: &str, count: usize, timeout: Duration) -> Vec<StoredMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mailbox(local_part);
            if mails.len() >= count {
                return mails;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{local_part}'s INBOX holds {} message(s) after {timeout:?}, waiting for {count}\n{}",
                    mails.len(),
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The last lines of Postfix's and Dovecot's logs (and of the start commands' output), for
    /// failure messages.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for (name, file) in [("postfix", "postfix.log"), ("dovecot", "dovecot.log"), ("start commands", "commands.log")]
        {
            let path = self.dir.join(file);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            let _ = writeln!(logs, "--- {name} ({}, last {} lines) ---", path.display(), tail.len());
            for line in tail {
                let _ = writeln!(logs, "{line}");
            }
        }
        logs
    }

    /// Waits (blocking, up to 15 s) until Postfix's queue is empty, so every message it accepted
    /// has been delivered to its mailbox: a test can then read the mailboxes as they stand.
    ///
    /// # Panics
    ///
    /// When mail is still queued after 60 s, showing the servers' logs.
    pub fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let queued = || {
            ["maildrop", "incoming", "active", "deferred", "hold"]
                .iter()
                .any(|queue| walk_has_file(&self.dir.join("queue").join(queue)))
        };
        while queued() {
            assert!(std::time::Instant::now() < deadline, "Postfix still holds mail after 15 s:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Disconnects every IMAP session of the user (`doveadm kick`), the way a server restart or a
    /// network failure drops a client.
    ///
    /// # Panics
    ///
    /// When `doveadm` fails.
    pub fn kick(&self, local_part: &str) {
        let conf = self.dir.join("dovecot/dovecot.conf");
        let mut command = Command::new("doveadm");
        command.arg("-c").arg(&conf).arg("kick").arg(local_part);
        if let Err(error) = run(&self.dir, &mut command) {
            panic!("doveadm kick {local_part} failed: {error}\n{}", self.logs());
        }
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("mail").join(user).join("Maildir")
    }

    /// Writes both servers' configuration and the directories they need.
    fn configure(&self, lmtp: SocketAddr, idle: bool) -> Result<(), String> {
        let dir = &self.dir;
        let (mail_uid, mail_gid) = self.mail_owner;
        let (postfix_uid, postfix_gid) = system_user("postfix", INSTALL_HINT)?;
        for sub in ["dovecot", "dovecot/run", "dovecot/state", "dovecot/users", "postfix", "queue", "data", "mail"] {
            create_dir(&dir.join(sub), 0o755)?;
        }
        std::os::unix::fs::chown(dir.join("data"), Some(postfix_uid), Some(postfix_gid))
            .map_err(|error| format!("chown {}: {error}", dir.join("data").display()))?;
        let instance = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let mut dovecot = dovecot_conf(dir, &instance, (mail_uid, mail_gid), self.imap, lmtp);
        if !idle {
            // The capability list replaced by one without IDLE (Dovecot then refuses the command).
            dovecot.push_str("protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ SASL-IR UIDPLUS\n}\n");
        }
        write_file(&dir.join("dovecot/dovecot.conf"), &dovecot)?;
        write_file(&dir.join("postfix/main.cf"), &postfix_main_cf(dir, &instance, lmtp))?;
        write_file(&dir.join("postfix/master.cf"), &postfix_master_cf(self.smtp))?;
        // `postfix` waits, in 300 ms steps, for a main.cf written in the last couple of seconds
        // to settle (it may be mid-edit): backdating it saves two seconds per start.
        let settled = SystemTime::now() - Duration::from_secs(10);
        for file in ["postfix/main.cf", "postfix/master.cf"] {
            set_modified(&dir.join(file), settled)?;
        }
        Ok(())
    }

    /// Adds or replaces the user's passwd-file line and creates their Maildir.
    fn write_user(&self, user: &str, password: &str) -> Result<(), String> {
        let (uid, gid) = self.mail_owner;
        let home = self.dir.join("mail").join(user);
        let _users = self.users.lock().unwrap_or_else(PoisonError::into_inner);

        let maildir = home.join("Maildir");
        for path in [home.clone(), maildir.clone(), maildir.join("new"), maildir.join("cur"), maildir.join("tmp")] {
            create_dir(&path, 0o700)?;
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|error| format!("chown {}: {error}", path.display()))?;
        }

        // A rename keeps a lookup from ever reading half a file.
        let path = self.dir.join("dovecot/users").join(user);
        let next = self.dir.join("dovecot/users").join(format!(".{user}.next"));
        write_file(&next, &format!("{user}:{{PLAIN}}{password}:{uid}:{gid}::{}::\n", home.display()))?;
        let previous = fs::metadata(&path).and_then(|metadata| metadata.modified()).ok();
        if let Some(previous) = previous {
            // A changed password: Dovecot re-reads the file when its mtime or size differs from
            // what it read, so make sure the mtime does.
            set_modified(&next, SystemTime::now().max(previous + Duration::from_secs(1)))?;
        }
        let written = SystemTime::now();
        fs::rename(&next, &path)
            .map_err(|error| format!("rename {} to {}: {error}", next.display(), path.display()))?;
        if previous.is_some() {
            // Dovecot stats a file it has read at most once a (wall-clock) second: from the next
            // second on, a lookup sees the change.
            let second = written.duration_since(UNIX_EPOCH).map(|since| since.as_secs()).unwrap_or(0);
            let next_second = UNIX_EPOCH + Duration::from_secs(second + 1);
            if let Ok(wait) = next_second.duration_since(SystemTime::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok(())
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            // It may have exited already; either way it must not race the stop below.
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let dovecot = fs::read_to_string(self.dir.join("dovecot/run/master.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        if let Some(pid) = dovecot {
            let _ = Command::new("kill").arg(pid.to_string()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        if self.dir.join("queue/pid/master.pid").exists() {
            // `postfix stop` waits (up to 5 s) for its master to exit.
            let _ = Command::new(POSTFIX)
                .arg("-c")
                .arg(self.dir.join("postfix"))
                .arg("stop")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(pid) = dovecot {
            // Dovecot's master takes about a second to stop its children; wait so the directory
            // can go.
            let deadline = Instant::now() + Duration::from_secs(5);
            while is_running(pid) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        for _ in 0..10 {
            match fs::remove_dir_all(&self.dir) {
                Err(error) if error.kind() != ErrorKind::NotFound => std::thread::sleep(POLL),
                _ => break,
            }
        }
    }
}

/// Checks the binaries are installed.
fn preflight() -> Result<(), String> {
    let missing: Vec<&str> =
        [DOVECOT, POSTFIX].into_iter().chain(DOVECOT_SERVICES).filter(|path| !Path::new(path).exists()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} missing; install them with `{INSTALL_HINT}`", missing.join(", ")))
    }
}

/// Creates the instance's directory, and checks this process is root by who owns it.
fn create_instance_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
    let instance = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
    // `/tmp`, not `$TMPDIR`: the `postfix` and `mail` users must reach it, and Postfix's unix
    // sockets live under it, whose paths must stay short.
    let dir = PathBuf::from(format!("/tmp/spacebot-mail-{}-{instance}-{nanos}", std::process::id()));
    create_dir(&dir, 0o755)?;
    let owner = fs::metadata(&dir).map(|metadata| metadata.uid()).map_err(|error| error.to_string())?;
    if owner != 0 {
        let _ = fs::remove_dir_all(&dir);
        return Err(format!(
            "it needs root (running as uid {owner}): Dovecot and Postfix switch to their own users to deliver mail"
        ));
    }
    Ok(dir)
}

/// Three distinct free ports of `127.0.0.1`: IMAP, LMTP and SMTP.
fn free_ports() -> Result<[u16; 3], String> {
    let bind = || {
        StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| Ok((listener.local_addr()?.port(), listener)))
            .map_err(|error| format!("can't bind 127.0.0.1:0: {error}"))
    };
    // Held together so the three differ; released for the servers to bind.
    let (a, b, c) = (bind()?, bind()?, bind()?);
    Ok([a.0, b.0, c.0])
}

/// A valid local part, lowercased (Dovecot looks users up lowercased).
fn checked_local_part(local_part: &str) -> String {
    let valid = !local_part.is_empty()
        && !local_part.starts_with('.')
        && local_part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    assert!(valid, "a mail test user is letters, digits, '.', '_', '-' and '+': {local_part:?}");
    local_part.to_ascii_lowercase()
}

fn create_dir(path: &Path, mode: u32) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
        Err(error) => return Err(format!("create {}: {error}", path.display())),
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| format!("chmod {}: {error}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|error| format!("write {}: {error}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .map_err(|error| format!("chmod {}: {error}", path.display()))
}

fn set_modified(path: &Path, time: SystemTime) -> Result<(), String> {
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .map_err(|error| format!("set the mtime of {}: {error}", path.display()))
}

/// The watchdog (see [`daemons::spawn_watchdog`]) that stops both servers and removes `dir`.
fn spawn_watchdog(dir: &Path) -> Option<Child> {
    const CLEANUP: &str = r#"
        pid=$(cat "$2/dovecot/run/master.pid" 2>/dev/null) && kill "$pid" 2>/dev/null
        "$3" -c "$2/postfix" stop >/dev/null 2>&1
        sleep 2
        rm -rf "$2"
    "#;
    daemons::spawn_watchdog("spacebot-mail-watchdog", CLEANUP, &[dir.as_os_str(), OsStr::new(POSTFIX)])
}

fn dovecot_conf(dir: &Path, instance: &str, (uid, gid): (u32, u32), imap: SocketAddr, lmtp: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"# A throwaway Dovecot for one test (spacebot-testing's mail_server).
instance_name = {instance}
base_dir = {dir}/dovecot/run
state_dir = {dir}/dovecot/state
log_path = {dir}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = 0
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/dovecot/users/%u
}}
userdb {{
  driver = passwd-file
  args = {dir}/dovecot/users/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {imap_ip}
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {lmtp_ip}
    port = {lmtp_port}
  }}
}}
"#,
        imap_ip = imap.ip(),
        imap_port = imap.port(),
        lmtp_ip = lmtp.ip(),
        lmtp_port = lmtp.port(),
    )
}

fn postfix_main_cf(dir: &Path, instance: &str, lmtp: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"# A throwaway Postfix for one test (spacebot-testing's mail_server).
compatibility_level = 3.6
queue_directory = {dir}/queue
data_directory = {dir}/data
maillog_file = {dir}/postfix.log
maillog_file_prefixes = {dir}
syslog_name = {instance}
myhostname = mail.{DOMAIN}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_reject_unlisted_recipient = no
smtpd_peername_lookup = no
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
virtual_mailbox_domains = {DOMAIN}
virtual_transport = lmtp:inet:{lmtp}
smtpd_tls_security_level = none
smtp_tls_security_level = none
lmtp_tls_security_level = none
biff = no
append_dot_mydomain = no
"#
    )
}

fn postfix_master_cf(smtp: SocketAddr) -> String {
    // Nothing chrooted: the queue lives in a temp dir with no copies of /etc in it.
    format!(
        "# A throwaway Postfix for one test (spacebot-testing's mail_server).
{smtp} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"
    )
}

/// The SMTP conversation for [`MailServer::send`].
async fn submit(addr: SocketAddr, from: &str, to: &str, raw: &str) -> Result<(), String> {
    let stream = TcpStream::connect(addr).await.map_err(|error| format!("connect: {error}"))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    reply(&mut read, "the greeting").await?;
    for command in [format!("EHLO client.{DOMAIN}"), format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
        say(&mut write, &command).await?;
        reply(&mut read, &command).await?;
    }
    say(&mut write, "DATA").await?;
    reply(&mut read, "DATA").await?;
    let mut data = String::with_capacity(raw.len() + 64);
    for line in raw.strip_suffix('\n').unwrap_or(raw).split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    write.write_all(data.as_bytes()).await.map_err(|error| format!("send the message: {error}"))?;
    reply(&mut read, "the message").await?;
    say(&mut write, "QUIT").await?;
    reply(&mut read, "QUIT").await?;
    Ok(())
}

async fn say(write: &mut tokio::net::tcp::OwnedWriteHalf, command: &str) -> Result<(), String> {
    write.write_all(format!("{command}\r\n").as_bytes()).await.map_err(|error| format!("send {command}: {error}"))
}

/// Reads one (possibly multi-line) reply; an error unless it is 2xx or 3xx.
async fn reply(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, after: &str) -> Result<String, String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = read.read_line(&mut line).await.map_err(|error| format!("read the reply to {after}: {error}"))?;
        if n == 0 {
            return Err(format!("the server hung up after {after}: {text:?}"));
        }
        text.push_str(&line);
        // The last line of a reply has a space (or nothing) after its code; the others a '-'.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    match text.as_bytes().first() {
        Some(b'2' | b'3') => Ok(text),
        _ => Err(format!("the server answered {after} with {:?}", text.trim_end())),
    }
}

/// The INBOX of a Maildir, in delivery order.
fn read_maildir(maildir: &Path) -> Result<Vec<StoredMail>, String> {
    // Dovecot moves a message from new/ to cur/ when a client opens the mailbox, and renames it
    // in cur/ when its flags change: a file that vanishes between listing and reading means a
    // fresh listing.
    'again: for _ in 0..20 {
        let mut mails = Vec::new();
        for sub in ["new", "cur"] {
            let entries = match fs::read_dir(maildir.join(sub)) {
                Ok(entries) => entries,
                Err(error) if error.kind() == ErrorKind::NotFound => continue,
                Err(error) => return Err(error.to_string()),
            };
            for entry in entries {
                let entry = entry.map_err(|error| error.to_string())?;
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') {
                    continue;
                }
                let bytes = match fs::read(entry.path()) {
                    Ok(bytes) => bytes,
                    Err(error) if error.kind() == ErrorKind::NotFound => continue 'again,
                    Err(error) => return Err(format!("{}: {error}", entry.path().display())),
                };
                let flags = file.split_once(":2,").map(|(_, flags)| flags).unwrap_or("");
                mails.push(StoredMail {
                    raw: String::from_utf8_lossy(&bytes).into_owned(),
                    seen: flags.contains('S'),
                    file,
                });
            }
        }
        mails.sort_by_cached_key(|mail| delivery_key(&mail.file));
        return Ok(mails);
    }
    Err("the Maildir kept changing while being read".to_owned())
}

/// Sorts Maildir names (`SECONDS.M<micros>P<pid>.host,...`) by delivery time: the microseconds
/// aren't zero-padded, so the name alone doesn't sort.
fn delivery_key(file: &str) -> (u64, u64, String) {
    let mut parts = file.split('.');
    let seconds = parts.next().and_then(|seconds| seconds.parse().ok()).unwrap_or(u64::MAX);
    let micros = parts
        .next()
        .and_then(|unique| unique.strip_prefix('M'))
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    (seconds, micros, file.to_owned())
}

/// Whether `dir` or a directory below it holds a file (Postfix's queues hash into subdirectories).
fn walk_has_file(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| match entry.file_type() {
        Ok(kind) if kind.is_dir() => walk_has_file(&entry.path()),
        Ok(_) => true,
        Err(_) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(raw: &str) -> StoredMail {
        StoredMail { raw: raw.to_owned(), seen: false, file: "1.M1P1.host".to_owned() }
    }

    #[test]
    fn headers_are_found_by_any_case_and_unfolded() {
        let stored = mail("Return-Path: <a@x>\nSubject: a long\n\tsubject line\nX-Subject: no\n\nbody\n");
        assert_eq!(stored.header("subject").as_deref(), Some("a long\tsubject line"));
        assert_eq!(stored.header("RETURN-PATH").as_deref(), Some("<a@x>"));
        assert_eq!(stored.header("Message-ID"), None);
    }

    #[test]
    fn the_body_starts_after_the_blank_line_with_either_line_ending() {
        assert_eq!(mail("A: 1\nB: 2\n\nline 1\n\nline 2\n").body(), "line 1\n\nline 2\n");
        assert_eq!(mail("A: 1\r\n\r\nbody\r\n").body(), "body\r\n");
        assert_eq!(mail("A: 1\nB: 2\n").body(), "");
        assert_eq!(mail("A: 1\n\nbody: not a header\n").header("body"), None);
    }

    #[test]
    fn maildir_names_sort_by_delivery_time() {
        let mut names = vec!["100.M900P1.h", "100.M1000P1.h", "99.M5P1.h", "100.M20P1.h:2,S"];
        names.sort_by_cached_key(|name| delivery_key(name));
        assert_eq!(names, ["99.M5P1.h", "100.M20P1.h:2,S", "100.M900P1.h", "100.M1000P1.h"]);
    }

    #[test]
    fn local_parts_are_checked_and_lowercased() {
        assert_eq!(checked_local_part("Bot.One+x"), "bot.one+x");
        assert!(std::panic::catch_unwind(|| checked_local_part("a b")).is_err());
        assert!(std::panic::catch_unwind(|| checked_local_part("")).is_err());
    }
}
