//! MCP servers no one here wrote, through the real binary: the `mcp` Python package's reference
//! server (`mcp_server.py`, on its `MCPServer`) over stdio and over streamable HTTP, and the npm
//! `@modelcontextprotocol/server-filesystem` over stdio, each called by a worker the fake model
//! drives; `spacebot mcp list` with the daemon running and without it.
//!
//! They need the servers installed: `.ci/run` installs the `mcp` Python package (pip) and the npm
//! package into `~/.cache/spacebot/npm`, and exports `SPACEBOT_TEST_PYTHON` (a Python with
//! `mcp`; default `python3`) and `SPACEBOT_TEST_MCP_NPM_DIR` (the npm prefix holding
//! `node_modules/@modelcontextprotocol/server-filesystem`). Without them the tests fail and say
//! how to install them. Stdio servers run in bubblewrap when it is installed (as in CI), or
//! unsandboxed under `tools.sandbox = "off"` where it is not.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use spacebot_testing::FakeLlmServer;

use crate::daemon::{
    Daemon, Home, PATIENCE, openai_config, run_cli, worker_calls, worker_tool_results, worker_tool_specs,
};

/// The Python with the `mcp` package, as the interpreter's own path (not a shim), and its
/// prefix (mounted read-only in the sandbox).
fn python() -> (PathBuf, PathBuf) {
    let python = std::env::var("SPACEBOT_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let probe = Command::new(&python)
        .args(["-c", "import mcp, sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)"])
        .output();
    let output = match &probe {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).into_owned(),
        _ => panic!(
            "this test needs the `mcp` Python package: `{python} -m pip install mcp` (or set SPACEBOT_TEST_PYTHON to \
             a Python that has it); .ci/run installs it. {probe:?}"
        ),
    };
    let mut lines = output.lines().map(PathBuf::from);
    let executable = lines.next().expect("sys.executable");
    let prefix = lines.next().expect("sys.prefix");
    (executable, prefix)
}

/// The npm prefix holding `@modelcontextprotocol/server-filesystem`.
fn npm_dir() -> PathBuf {
    let dir = std::env::var("SPACEBOT_TEST_MCP_NPM_DIR").map(PathBuf::from).unwrap_or_default();
    let entry = dir.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    assert!(
        entry.is_file(),
        "this test needs the npm package @modelcontextprotocol/server-filesystem: `npm install --prefix DIR \
         @modelcontextprotocol/server-filesystem` and SPACEBOT_TEST_MCP_NPM_DIR=DIR; .ci/run does both (found no {})",
        entry.display()
    );
    dir
}

/// `tools.sandbox = "off"` where bubblewrap is missing (stdio servers would be refused under
/// `auto`), nothing where it is installed.
fn sandbox_config() -> &'static str {
    if spacebot_agent::bubblewrap_available() { "" } else { "[tools]\nsandbox = \"off\"\n" }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/mcp_server.py")
}

fn spec<'a>(specs: &'a [Value], name: &str) -> &'a Value {
    specs.iter().find(|spec| spec["function"]["name"] == name).unwrap_or_else(|| panic!("no `{name}` in {specs:#?}"))
}

/// Runs one message through a worker calling `tool`, and returns the worker's tool results.
async fn through_a_worker(daemon: &mut Daemon, server: &str, conversation: &str) {
    daemon.wait_for_log(&format!("MCP server connected server={server}"), PATIENCE).await;
    daemon.say("main", conversation, "alice", "use the tool").await;
    daemon.wait_for_answers("main", conversation, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reference_server_over_stdio_answers_a_worker_in_the_sandbox() {
    let (python, prefix) = python();
    let model = FakeLlmServer::start().await;
    worker_calls(&model, "py_add", json!({ "a": 2, "b": 3 }));
    let script = script();
    let config = format!(
        "{}{}\n[[mcp_servers]]\nname = \"py\"\ncommand = \"{}\"\nargs = [\"{}\", \"stdio\"]\nread_paths = [\"{}\", \"{}\"]\n",
        openai_config(&model.openai_base_url()),
        sandbox_config(),
        python.display(),
        script.display(),
        prefix.display(),
        script.parent().expect("dir").display(),
    );
    let home = Home::new(&config);
    let mut daemon = Daemon::start(&home).await;
    through_a_worker(&mut daemon, "py", "stdio").await;
    let results = worker_tool_results(&model);
    assert!(results.iter().any(|result| result == "the sum is 5"), "{results:#?}");
    let specs = worker_tool_specs(&model);
    let add = spec(&specs, "py_add");
    assert_eq!(add["function"]["parameters"]["properties"]["a"]["type"], "integer", "{add}");
    assert!(add["function"]["description"].as_str().unwrap_or_default().contains("Add two integers"), "{add}");
    assert!(specs.iter().any(|spec| spec["function"]["name"] == "py_whereami"), "{specs:#?}");

    // `mcp list` asks the running daemon.
    let output = run_cli(&["mcp", "list", "--url", &daemon.base], &[], home.dir.path());
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(listed.contains("py (stdio: ") && listed.contains("connected"), "{listed}");
    assert!(listed.contains("  py_add  Add two integers."), "{listed}");
    let (status, _) = daemon.stop().await;
    assert!(status.success());
}

/// Sandboxed (where bubblewrap is installed), the server sees none of the daemon's secrets and
/// runs in the sandbox; it gets only the variables its config names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_gets_no_daemon_secret_and_runs_in_the_sandbox() {
    let (python, prefix) = python();
    let model = FakeLlmServer::start().await;
    worker_calls(&model, "py_whereami", json!({}));
    let script = script();
    let config = format!(
        "{}{}\n[[mcp_servers]]\nname = \"py\"\ncommand = \"{}\"\nargs = [\"{}\"]\nread_paths = [\"{}\", \"{}\"]\nenv = {{ GIVEN_TOKEN = \"env:MCP_E2E_GIVEN\" }}\n",
        openai_config(&model.openai_base_url()),
        sandbox_config(),
        python.display(),
        script.display(),
        prefix.display(),
        script.parent().expect("dir").display(),
    );
    let home = Home::new(&config);
    let mut daemon =
        Daemon::start_with(&home, &[("OPENAI_API_KEY", "sk-daemon-env"), ("MCP_E2E_GIVEN", "given-on-purpose")]).await;
    through_a_worker(&mut daemon, "py", "env").await;
    let results = worker_tool_results(&model);
    let sandbox = if spacebot_agent::bubblewrap_available() { "sandbox=bubblewrap" } else { "sandbox=none" };
    assert!(results.iter().any(|result| result.starts_with(sandbox)), "{results:#?}");
    // Only the variable the config names reached it; its value is a resolved secret, scrubbed.
    assert!(results.iter().any(|result| result.contains("secret_env=GIVEN_TOKEN ")), "{results:#?}");
    daemon.stop().await;
}

/// The Python server over streamable HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_reference_server_over_streamable_http_answers_a_worker() {
    let (python, _) = python();
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let server = Server(
        Command::new(&python)
            .arg(script())
            .args(["http", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the Python MCP server"),
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the Python MCP server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let model = FakeLlmServer::start().await;
    worker_calls(&model, "web_add", json!({ "a": 40, "b": 2 }));
    let config = format!(
        "{}\n[[mcp_servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:{port}/mcp\"\ntimeout_secs = 20\n",
        openai_config(&model.openai_base_url()),
    );
    let home = Home::new(&config);
    let mut daemon = Daemon::start(&home).await;
    through_a_worker(&mut daemon, "web", "http").await;
    let results = worker_tool_results(&model);
    assert!(results.iter().any(|result| result == "the sum is 42"), "{results:#?}");
    daemon.stop().await;

    // Without a daemon, `mcp list` connects to the server itself.
    let output = run_cli(
        &[
            "--config",
            home.config_path().to_str().expect("utf-8"),
            "--data-dir",
            home.data_dir().to_str().expect("utf-8"),
            "mcp",
            "list",
        ],
        &[("SPACEBOT_API__BIND", "127.0.0.1:9")],
        home.dir.path(),
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(listed.contains("spacebot is not running"), "{listed}");
    assert!(listed.contains("web (http: http://127.0.0.1:") && listed.contains("connected"), "{listed}");
    assert!(listed.contains("  web_add  "), "{listed}");
    drop(server);
}

/// The npm filesystem server over stdio, in the sandbox with only its directory writable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_npm_filesystem_server_reads_a_file_for_a_worker() {
    let npm = npm_dir();
    let shared = tempfile::tempdir().expect("shared dir");
    let shared_path = shared.path().canonicalize().expect("canonical");
    std::fs::write(shared_path.join("note.txt"), "written before the daemon started").expect("write");
    let model = FakeLlmServer::start().await;
    let file = shared_path.join("note.txt");
    worker_calls(&model, "files_read_text_file", json!({ "path": file.to_str().expect("utf-8") }));
    let entry = npm.join("node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let config = format!(
        "{}{}\n[[mcp_servers]]\nname = \"files\"\ncommand = \"node\"\nargs = [\"{}\", \"{}\"]\nread_paths = [\"{}\"]\nwrite_paths = [\"{}\"]\n",
        openai_config(&model.openai_base_url()),
        sandbox_config(),
        entry.display(),
        shared_path.display(),
        npm.display(),
        shared_path.display(),
    );
    let home = Home::new(&config);
    let mut daemon = Daemon::start(&home).await;
    through_a_worker(&mut daemon, "files", "files").await;
    let results = worker_tool_results(&model);
    assert!(results.iter().any(|result| result.contains("written before the daemon started")), "{results:#?}");
    let specs = worker_tool_specs(&model);
    let read = spec(&specs, "files_read_text_file");
    assert_eq!(read["function"]["parameters"]["properties"]["path"]["type"], "string", "{read}");
    daemon.stop().await;
}

/// Kills the HTTP server at the end of the test.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Under `tools.sandbox = "auto"` without bubblewrap, a stdio server is refused like the shell,
/// saying how to fix it (bubblewrap is hidden from the command by its `PATH`).
#[test]
fn without_bubblewrap_a_stdio_server_is_refused_under_auto() {
    let (python, prefix) = python();
    let script = script();
    let config = format!(
        "[[mcp_servers]]\nname = \"py\"\ncommand = \"{}\"\nargs = [\"{}\"]\nread_paths = [\"{}\"]\ntimeout_secs = 5\n\n[api]\nbind = \"127.0.0.1:9\"\n",
        python.display(),
        script.display(),
        prefix.display(),
    );
    let home = Home::new(&config);
    let output = run_cli(
        &[
            "--config",
            home.config_path().to_str().expect("utf-8"),
            "--data-dir",
            home.data_dir().to_str().expect("utf-8"),
            "mcp",
            "list",
        ],
        &[("PATH", "/nonexistent")],
        home.dir.path(),
    );
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(listed.contains("py (stdio: ") && listed.contains("refused: stdio MCP servers are disabled"), "{listed}");
    assert!(listed.contains("apt install bubblewrap") && listed.contains("tools.sandbox = \"off\""), "{listed}");
    assert!(!listed.contains("py_add"), "{listed}");
}
