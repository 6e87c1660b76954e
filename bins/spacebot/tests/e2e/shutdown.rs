//! Shutdown is bounded even when blocking work is stuck: the daemon run by `spacebot::run` (what
//! `spacebot start` runs) returns after "shutdown complete" and the grace, so the process exits,
//! although a blocking task on its runtime never finishes (as a read of a FIFO with no writer
//! never did).

use std::sync::mpsc;

use spacebot::{Config, Location};

use crate::daemon::{Home, PATIENCE, openai_config};

#[test]
fn a_stuck_blocking_task_does_not_keep_the_daemon_from_returning() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let home = Home::new(&format!(
        "shutdown_grace_secs = 1\n{}\n[api]\nbind = \"127.0.0.1:0\"\n",
        openai_config("http://127.0.0.1:9/v1")
    ));
    let config = Config::load(&Location::new().with_config(home.config_path()).with_data_dir(home.data_dir()))
        .expect("config loads");

    // The stuck task waits on this channel; the test lets it go only after its verdict.
    let (release, stuck_on) = mpsc::channel::<()>();
    let (finished, outcome) = mpsc::channel();
    let daemon = std::thread::spawn(move || {
        let result = spacebot::run(&config, async move {
            // Detached on purpose: nothing can cancel a blocking call.
            let _stuck = tokio::task::spawn_blocking(move || stuck_on.recv());
        });
        let _ = finished.send(result.map_err(|error| format!("{error:#}")));
    });

    let verdict = outcome.recv_timeout(PATIENCE);
    let _ = release.send(());
    assert_eq!(
        verdict.expect("spacebot::run did not return while a blocking task was stuck"),
        Ok(()),
        "a clean shutdown"
    );
    daemon.join().expect("the daemon thread ends");
}

/// A supervisor (or a test) may send SIGTERM the moment it reads `spacebot ready`: the signal
/// handler is in place by then, so every stop is a clean one (exit 0, "shutdown complete"), never
/// the signal's default action. Twenty quick start-and-stop rounds give a late handler many
/// chances to lose the race.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_ready_is_a_clean_shutdown() {
    let home = Home::new(&openai_config("http://127.0.0.1:9/v1"));
    for round in 0..20 {
        let daemon = crate::daemon::Daemon::start(&home).await;
        let (status, logs) = daemon.stop().await;
        assert!(status.success(), "round {round}: {status:?}; logs:\n{}", logs.join("\n"));
        assert!(logs.iter().any(|l| l.contains("shutdown complete")), "round {round}:\n{}", logs.join("\n"));
    }
}
