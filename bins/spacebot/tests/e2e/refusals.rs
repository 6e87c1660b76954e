//! `config check` refuses what `start` refuses, with the same one sentence naming the key and the
//! file (or flag): each case runs both through the real binary.

use std::io::Read;
use std::process::Stdio;
use std::time::Instant;

use crate::daemon::{Home, PATIENCE, openai_config, run_cli, spacebot};

/// Runs `config check` and then `start` on the home's config with `args`; both must fail, and
/// `start`'s last stderr line (after its log lines) must be `config check`'s one line. Returns it.
fn refused(home: &Home, args: &[&str]) -> String {
    let config = home.config_path();
    let config = config.to_str().expect("utf-8 path");
    let check = run_cli(&[&["config", "check", "--config", config], args].concat(), &[], home.dir.path());
    let check_stderr = String::from_utf8_lossy(&check.stderr).trim().to_owned();
    assert!(
        !check.status.success(),
        "config check accepted it:\n{}{check_stderr}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(check_stderr.lines().count(), 1, "not one sentence: {check_stderr}");

    let mut start = spacebot()
        .args([&["start", "--config", config], args].concat())
        .env("SPACEBOT_API__BIND", "127.0.0.1:0")
        .current_dir(home.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn start");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = start.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = start.kill();
            let _ = start.wait();
            panic!("start accepted what config check refused ({check_stderr}) and ran");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut start_stderr = String::new();
    start.stderr.take().expect("stderr").read_to_string(&mut start_stderr).expect("read stderr");
    assert!(!status.success(), "start exited cleanly: {start_stderr}");
    let last = start_stderr.trim().lines().last().unwrap_or_default();
    assert_eq!(last, check_stderr, "start and config check say different things; start's stderr:\n{start_stderr}");
    check_stderr
}

/// A home whose config is the e2e provider config plus `extra`, and the config file's path.
fn home_with(extra: &str) -> (Home, String) {
    let home = Home::new(&format!("{extra}\n{}", openai_config("http://127.0.0.1:9/v1")));
    let file = home.config_path().display().to_string();
    (home, file)
}

#[test]
fn a_base_url_that_is_not_an_http_url_is_refused() {
    let home = Home::new(&openai_config("http://"));
    let file = home.config_path().display().to_string();
    let data = home.data_dir();
    let error = refused(&home, &["--data-dir", data.to_str().unwrap()]);
    assert_eq!(
        error,
        format!(
            "error: config key `llm.providers.main.base_url` in {file} must be an http(s) URL like \
             https://api.example.com/v1, not `http://` (empty host)"
        )
    );
}

#[test]
fn a_data_dir_that_cannot_be_created_is_refused_naming_the_key_and_the_path() {
    let scratch = tempfile::tempdir().unwrap();
    let blocker = scratch.path().join("a-file");
    std::fs::write(&blocker, b"in the way").unwrap();
    let data = blocker.join("data");
    let (home, file) = home_with(&format!("data_dir = \"{}\"", data.display()));
    assert_eq!(
        refused(&home, &[]),
        format!(
            "error: data dir {} (config key `data_dir` in {file}) can't be created in {}: not a directory",
            data.display(),
            blocker.display()
        )
    );
    assert_eq!(
        refused(&home, &["--data-dir", blocker.to_str().unwrap()]),
        format!("error: data dir {} (--data-dir) is not a directory", blocker.display())
    );
}

/// `/sys` is read-only even for root, so this holds whoever runs the tests.
#[test]
fn a_data_dir_that_is_not_writable_is_refused() {
    let (home, file) = home_with("data_dir = \"/sys\"");
    let error = refused(&home, &[]);
    assert!(
        error.starts_with(&format!("error: data dir /sys (config key `data_dir` in {file}) is not writable: ")),
        "{error}"
    );
    let (home, _) = home_with("data_dir = \"/sys/spacebot\"");
    let error = refused(&home, &[]);
    assert!(
        error.contains("data dir /sys/spacebot (config key `data_dir` in")
            && error.contains("can't be created in /sys: "),
        "{error}"
    );
}

#[test]
fn an_empty_data_dir_is_refused_instead_of_writing_into_the_current_directory() {
    let (home, file) = home_with("data_dir = \"\"");
    assert_eq!(
        refused(&home, &[]),
        format!(
            "error: config key `data_dir` in {file} is empty; name a directory, or leave the key out for ~/.spacebot"
        )
    );
    assert!(!home.dir.path().join("spacebot.db").exists(), "nothing was written into the working directory");
    // clap refuses `--data-dir ""` itself; blanks are no directory either.
    assert_eq!(refused(&home, &["--data-dir", " "]), "error: --data-dir is empty; name a directory");
}

#[test]
fn a_zero_turn_timeout_is_refused() {
    let (home, file) = home_with("[[agents]]\nid = \"main\"\nturn_timeout_secs = 0\n");
    let data = home.data_dir();
    assert_eq!(
        refused(&home, &["--data-dir", data.to_str().unwrap()]),
        format!("error: config key `agents[0].turn_timeout_secs` in {file} must be at least 1, not 0")
    );
}

#[test]
fn a_zero_body_limit_is_refused() {
    let (home, file) = home_with("[api]\nmax_body_bytes = 0\n");
    let data = home.data_dir();
    assert_eq!(
        refused(&home, &["--data-dir", data.to_str().unwrap()]),
        format!("error: config key `api.max_body_bytes` in {file} must be at least 1, not 0")
    );
}

#[test]
fn other_zero_limits_are_refused() {
    for (toml, key) in [
        ("[llm.providers.other]\nkind = \"openai\"\ntimeout_secs = 0\n", "llm.providers.other.timeout_secs"),
        ("[[agents]]\nid = \"main\"\nmax_model_calls_per_turn = 0\n", "agents[0].max_model_calls_per_turn"),
        ("[tools]\nshell_timeout_secs = 0\n", "tools.shell_timeout_secs"),
        ("[memory]\nmaintenance_budget_secs = 0\n", "memory.maintenance_budget_secs"),
    ] {
        let (home, file) = home_with(toml);
        let data = home.data_dir();
        assert_eq!(
            refused(&home, &["--data-dir", data.to_str().unwrap()]),
            format!("error: config key `{key}` in {file} must be at least 1, not 0")
        );
    }
}

#[test]
fn a_negative_limit_is_refused_naming_the_key() {
    let (home, file) = home_with("[[agents]]\nid = \"main\"\nhistory_limit = -5\n");
    let data = home.data_dir();
    let error = refused(&home, &["--data-dir", data.to_str().unwrap()]);
    assert!(error.starts_with("error: invalid value for config key `agents.0.history_limit`"), "{error}");
    assert!(error.ends_with(&format!(" in {file}")), "{error}");
}

#[test]
fn a_toml_syntax_error_is_one_line_with_the_file_line_and_column() {
    let home = Home::new("[api]\nbind = \"127.0.0.1:0\n[llm.models]\n");
    let file = home.config_path().display().to_string();
    let error = refused(&home, &[]);
    assert!(error.starts_with(&format!("error: config file {file} is not valid TOML: line 2, column ")), "{error}");
}

#[test]
fn an_empty_api_token_is_refused_rather_than_turning_authentication_off() {
    let (home, file) = home_with("[api]\ntoken = \"env:SPACEBOT_TEST_EMPTY_TOKEN\"");
    let data = home.data_dir();
    // The variable is set, to nothing: what a deployment with a missing secret looks like.
    let config = home.config_path();
    let check = run_cli(
        &["config", "check", "--config", config.to_str().expect("utf-8"), "--data-dir", data.to_str().expect("utf-8")],
        &[("SPACEBOT_TEST_EMPTY_TOKEN", "")],
        home.dir.path(),
    );
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    assert!(said.contains("`api.token`") && said.contains(&file) && said.contains("authentication off"), "{said}");

    let (home, _) = home_with("[api]\ntoken = \"\"");
    let data = home.data_dir();
    let error = refused(&home, &["--data-dir", data.to_str().expect("utf-8")]);
    assert!(error.contains("`api.token`") && error.contains("is empty"), "{error}");
}
