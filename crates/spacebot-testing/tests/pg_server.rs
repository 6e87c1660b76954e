//! The PostgreSQL harness against the real server: each database it creates is new and empty and
//! reachable by its URL over TCP, the shared server is one per process, and a dropped server stops
//! listening.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::Command;

use spacebot_testing::PgServer;

/// Debian's `psql` of the newest installed version, as a client.
fn psql() -> PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed")
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path())))
        .max()
        .expect("a PostgreSQL version");
    newest.1.join("bin/psql")
}

/// Runs `sql` on the database at `url`; its output, or what went wrong.
fn query(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(psql())
        .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align", "--set", "ON_ERROR_STOP=1"])
        .args(["--dbname", url, "--command", sql])
        .output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn each_database_is_new_and_a_dropped_server_stops_listening() {
    let server = PgServer::start().await;
    let port = server.port();
    let (first, second) = (server.create_database().await, server.create_database().await);
    assert_ne!(first, second);
    assert!(first.starts_with(&format!("postgres://postgres@127.0.0.1:{port}/")), "{first}");
    for url in [&first, &second] {
        // The same table in both: a second database that were the first would refuse it.
        query(url, "CREATE TABLE t (x INT); INSERT INTO t VALUES (1)").unwrap_or_else(|error| {
            panic!("{url}: {error}\n{}", server.logs());
        });
    }
    assert_eq!(query(&first, "SELECT count(*) FROM t").as_deref(), Ok("1"));
    assert_eq!(query(&first, "SHOW fsync").as_deref(), Ok("off"), "tests don't wait for the disk");

    drop(server);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(), "nothing listens on {port} any more");
}

#[tokio::test]
async fn the_shared_server_is_one_per_process() {
    let (a, b) = (PgServer::shared().await, PgServer::shared().await);
    assert!(std::ptr::eq(a, b));
    let url = a.create_database().await;
    assert_eq!(query(&url, "SELECT current_database()"), Ok(url.rsplit('/').next().unwrap_or_default().to_owned()));
}
