//! The MCP clients of the daemon: one task per server that connects, lists the tools, watches
//! the connection and reconnects with backoff; the tools of the servers connected now; and
//! each server's state for `spacebot mcp list`.
//!
//! A server's live state sits in a `watch` channel its task writes and everyone else reads
//! (tool calls take the connection's peer from it, `status` the state and tools); nothing
//! holds it across an await.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rmcp::service::{Peer, RoleClient};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use spacebot_core::Tool;

use crate::connect::{Connection, Connector, StdioLauncher};
use crate::error::ConnectError;
use crate::settings::McpServerSettings;
use crate::tool::McpTool;

/// The first wait before reconnecting; it doubles after each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait before reconnecting. A connection that lived this long resets the backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a server gets to close its connection at shutdown.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Where a server stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerState {
    /// Turned off in the config.
    Disabled,
    /// Connecting (first time or again).
    Connecting,
    /// Connected; its tools are offered.
    Connected,
    /// The last attempt failed or the connection dropped; trying again after a backoff.
    Failed(String),
    /// May not run at all (the sandbox is missing); not retried.
    Refused(String),
    /// The client was shut down.
    Stopped,
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("disabled"),
            Self::Connecting => f.write_str("connecting"),
            Self::Connected => f.write_str("connected"),
            Self::Failed(reason) => write!(f, "failed: {reason}; retrying"),
            Self::Refused(reason) => write!(f, "refused: {reason}"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// One tool of a server as `spacebot mcp list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ToolInfo {
    /// The name workers call it by (`<server>_<tool>`).
    pub name: String,
    /// Its description.
    pub description: String,
}

/// A server's state and tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ServerStatus {
    /// The configured name.
    pub name: String,
    /// The command or URL.
    pub transport: String,
    /// Where it stands.
    pub state: ServerState,
    /// Its tools while connected.
    pub tools: Vec<ToolInfo>,
    /// How many times it connected since the daemon started.
    pub connections: u32,
}

/// What a server's task publishes.
struct Live {
    state: ServerState,
    tools: Vec<Arc<McpTool>>,
    peer: Option<Peer<RoleClient>>,
    connections: u32,
}

impl Live {
    fn with_state(state: ServerState, connections: u32) -> Self {
        Self { state, tools: Vec::new(), peer: None, connections }
    }
}

/// A server's settings and live state, shared by its task and its tools.
pub(crate) struct Shared {
    pub(crate) settings: McpServerSettings,
    live: watch::Sender<Live>,
}

impl Shared {
    /// The connection's peer while connected.
    pub(crate) fn peer(&self) -> Option<Peer<RoleClient>> {
        self.live.borrow().peer.clone()
    }

    /// Where the server stands.
    pub(crate) fn state(&self) -> ServerState {
        self.live.borrow().state.clone()
    }

    fn status(&self) -> ServerStatus {
        let live = self.live.borrow();
        ServerStatus {
            name: self.settings.name.clone(),
            transport: self.settings.transport.describe(),
            state: live.state.clone(),
            tools: live
                .tools
                .iter()
                .map(|tool| ToolInfo { name: tool.name.clone(), description: tool.spec.description.clone() })
                .collect(),
            connections: live.connections,
        }
    }

    fn set_state(&self, state: ServerState) {
        self.live.send_modify(|live| {
            live.state = state;
            live.tools.clear();
            live.peer = None;
        });
    }
}

/// The daemon's MCP clients: a task per enabled server, owned here.
pub struct McpClients {
    servers: McpHandle,
    tasks: JoinSet<()>,
    cancel: CancellationToken,
}

/// A cheap handle on the servers' live state: their tools and status, for the workers' tool
/// source and the API, while [`McpClients`] owns the tasks.
#[derive(Clone)]
pub struct McpHandle {
    servers: Arc<[Arc<Shared>]>,
}

impl McpHandle {
    /// The tools of the servers connected now, each server's in the order it listed them.
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.servers
            .iter()
            .flat_map(|server| {
                server.live.borrow().tools.iter().map(|tool| tool.clone() as Arc<dyn Tool>).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Each server's state and tools, in the configured order.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers.iter().map(|server| server.status()).collect()
    }
}

impl McpClients {
    /// Starts a task per enabled server that connects to it (stdio servers started by
    /// `launcher`) and keeps it connected. Returns at once: connecting happens in the background.
    pub fn start(servers: &[McpServerSettings], launcher: Arc<dyn StdioLauncher>, cancel: CancellationToken) -> Self {
        let connectors = servers
            .iter()
            .map(|server| (server.clone(), Connector::new(&server.transport, launcher.clone())))
            .collect();
        Self::start_with(connectors, cancel)
    }

    pub(crate) fn start_with(servers: Vec<(McpServerSettings, Connector)>, cancel: CancellationToken) -> Self {
        let mut tasks = JoinSet::new();
        let mut shared = Vec::new();
        for (settings, connector) in servers {
            let initial = if settings.enabled { ServerState::Connecting } else { ServerState::Disabled };
            let server = Arc::new(Shared { settings, live: watch::Sender::new(Live::with_state(initial, 0)) });
            if server.settings.enabled {
                tasks.spawn(supervise(server.clone(), connector, cancel.clone()));
            }
            shared.push(server);
        }
        Self { servers: McpHandle { servers: shared.into() }, tasks, cancel }
    }

    /// A handle on the servers' tools and status.
    pub fn handle(&self) -> McpHandle {
        self.servers.clone()
    }

    /// The tools of the servers connected now (see [`McpHandle::tools`]).
    pub fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.servers.tools()
    }

    /// Each server's state and tools (see [`McpHandle::status`]).
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers.status()
    }

    /// Waits until no server is connecting any more (each connected, failed, refused or
    /// disabled) or `limit` passed, whichever is first; for one-shot clients such as
    /// `spacebot mcp list` without a daemon.
    pub async fn settled(&self, limit: Duration) {
        let all = async {
            for server in self.servers.servers.iter() {
                let mut live = server.live.subscribe();
                let _ = live.wait_for(|live| live.state != ServerState::Connecting).await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }

    /// Stops every server's task (closing its connection, ending a stdio server's process) and
    /// waits for them.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for McpClients {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One server's life: connect, publish its tools, watch the connection, back off, again, until
/// cancelled.
async fn supervise(server: Arc<Shared>, connector: Connector, cancel: CancellationToken) {
    let name = server.settings.name.clone();
    let timeout = server.settings.timeout;
    let mut backoff = FIRST_BACKOFF;
    loop {
        server.set_state(ServerState::Connecting);
        let attempt = tokio::select! {
            () = cancel.cancelled() => break,
            attempt = tokio::time::timeout(timeout, connect(&server, &connector)) => attempt,
        };
        match attempt {
            Ok(Ok(connection)) => {
                tracing::info!(server = %name, tools = server.live.borrow().tools.len(), "MCP server connected");
                let since = tokio::time::Instant::now();
                let closing = connection.cancellation_token();
                let waiting = connection.waiting();
                tokio::pin!(waiting);
                tokio::select! {
                    () = cancel.cancelled() => {
                        closing.cancel();
                        let _ = tokio::time::timeout(CLOSE_GRACE, &mut waiting).await;
                        break;
                    }
                    _ = &mut waiting => {}
                }
                tracing::warn!(server = %name, "the MCP server's connection closed; reconnecting");
                server.set_state(ServerState::Failed("the connection closed".to_owned()));
                if since.elapsed() >= MAX_BACKOFF {
                    backoff = FIRST_BACKOFF;
                }
            }
            Ok(Err(error)) if !error.is_retryable() => {
                tracing::error!(server = %name, %error, "the MCP server may not run");
                server.set_state(ServerState::Refused(error.to_string()));
                cancel.cancelled().await;
                break;
            }
            Ok(Err(error)) => {
                tracing::warn!(server = %name, %error, retry_in = ?backoff, "can't connect to the MCP server");
                server.set_state(ServerState::Failed(error.to_string()));
            }
            Err(_) => {
                let reason = format!("no answer within {} seconds", timeout.as_secs());
                tracing::warn!(server = %name, %reason, retry_in = ?backoff, "can't connect to the MCP server");
                server.set_state(ServerState::Failed(reason));
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    // Dropping the tools here also breaks the cycle between them and this state.
    let connections = server.live.borrow().connections;
    server.live.send_replace(Live::with_state(ServerState::Stopped, connections));
}

/// One connection: handshake, tool listing, then the tools published. On failure the
/// connection (and a stdio server's process) is dropped.
async fn connect(server: &Arc<Shared>, connector: &Connector) -> Result<Connection, ConnectError> {
    let connection = connector.connect().await?;
    let listed = connection.list_all_tools().await.map_err(|error| ConnectError::ListTools(error.to_string()))?;
    let tools: Vec<Arc<McpTool>> = listed.iter().map(|tool| Arc::new(McpTool::new(server.clone(), tool))).collect();
    let peer = connection.peer().clone();
    server.live.send_modify(|live| {
        live.state = ServerState::Connected;
        live.tools = tools;
        live.peer = Some(peer);
        live.connections += 1;
    });
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rmcp::ServiceExt;
    use rmcp::model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult, PaginatedRequestParams,
        ServerCapabilities, ServerConfig,
    };
    use rmcp::service::{RequestContext, RoleServer};
    use rmcp::{ErrorData, ServerHandler};
    use tokio::sync::Notify;

    use super::*;
    use crate::settings::McpTransport;

    /// An MCP server in the test's process: `echo` answers, `slow` never does, `crash` ends the
    /// server mid-call.
    #[derive(Clone)]
    struct TestServer {
        crash: Arc<Notify>,
    }

    impl ServerHandler for TestServer {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }

        async fn list_tools(
            &self,
            _request: Option<PaginatedRequestParams>,
            _context: RequestContext<RoleServer>,
        ) -> Result<ListToolsResult, ErrorData> {
            let schema = |properties: serde_json::Value| {
                serde_json::json!({ "type": "object", "properties": properties }).as_object().cloned().unwrap()
            };
            Ok(ListToolsResult::with_all_items(vec![
                rmcp::model::Tool::new(
                    "echo",
                    "Say it back.",
                    Arc::new(schema(serde_json::json!({"text": {"type": "string"}}))),
                ),
                rmcp::model::Tool::new("slow", "Never answers.", Arc::new(schema(serde_json::json!({})))),
                rmcp::model::Tool::new("crash", "Ends the server.", Arc::new(schema(serde_json::json!({})))),
            ]))
        }

        async fn call_tool(
            &self,
            request: CallToolRequestParams,
            _context: RequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            match request.name.as_ref() {
                "echo" => {
                    let text = request.arguments.and_then(|args| args.get("text").cloned()).unwrap_or_default();
                    Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text(
                        text.as_str().unwrap_or_default(),
                    )])))
                }
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(CallToolResponse::Complete(CallToolResult::success(vec![ContentBlock::text("late")])))
                }
                _ => {
                    self.crash.notify_waiters();
                    std::future::pending().await
                }
            }
        }
    }

    /// A connector to a fresh in-process server per connection; the test owns the servers'
    /// tasks and counts the connections made.
    struct Harness {
        crash: Arc<Notify>,
        servers: Arc<Mutex<JoinSet<()>>>,
        connects: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Harness {
        fn new() -> Self {
            Self { crash: Arc::new(Notify::new()), servers: Arc::default(), connects: Arc::default() }
        }

        fn connector(&self) -> Connector {
            let (crash, servers, connects) = (self.crash.clone(), self.servers.clone(), self.connects.clone());
            Connector::Custom(Arc::new(move || {
                let (crash, servers, connects) = (crash.clone(), servers.clone(), connects.clone());
                Box::pin(async move {
                    connects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
                    let handler = TestServer { crash: crash.clone() };
                    servers.lock().unwrap().spawn(async move {
                        let Ok(running) = handler.serve(server_io).await else { return };
                        let waiting = running.waiting();
                        tokio::select! {
                            () = crash.notified() => {}
                            _ = waiting => {}
                        }
                    });
                    ().serve(client_io).await.map_err(|error| ConnectError::Handshake(error.to_string()))
                })
            }))
        }
    }

    fn settings(timeout: Duration) -> McpServerSettings {
        McpServerSettings::new("test", McpTransport::http("http://unused.invalid/mcp")).with_timeout(timeout)
    }

    /// Waits (at most 300 s of the paused clock) for the first server's state to pass `check`.
    async fn reached(clients: &McpClients, check: impl FnMut(&ServerState) -> bool) {
        let mut check = check;
        let mut live = clients.servers.servers[0].live.subscribe();
        let waiting = live.wait_for(|live| check(&live.state));
        tokio::time::timeout(Duration::from_secs(300), waiting).await.expect("reached within 300 s").unwrap();
    }

    async fn connected(clients: &McpClients) {
        reached(clients, |state| *state == ServerState::Connected).await;
    }

    fn tool(clients: &McpClients, name: &str) -> Arc<dyn Tool> {
        clients.tools().into_iter().find(|tool| tool.name() == name).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn tools_are_offered_with_the_server_prefix_and_answer() {
        let harness = Harness::new();
        let clients = McpClients::start_with(
            vec![(settings(Duration::from_secs(5)), harness.connector())],
            CancellationToken::new(),
        );
        connected(&clients).await;
        let names: Vec<String> = clients.tools().iter().map(|tool| tool.name().to_owned()).collect();
        assert_eq!(names, ["test_echo", "test_slow", "test_crash"]);
        let spec = tool(&clients, "test_echo").spec();
        assert_eq!(spec.parameters["properties"]["text"]["type"], "string");
        assert!(spec.description.starts_with("Say it back."), "{}", spec.description);
        let answer = tool(&clients, "test_echo").call(serde_json::json!({"text": "hello"})).await.unwrap();
        assert_eq!(answer, "hello");
        let status = clients.status();
        assert_eq!(status[0].state, ServerState::Connected);
        assert_eq!(status[0].tools.len(), 3);
        clients.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_server_fails_the_call_within_its_timeout() {
        let harness = Harness::new();
        let clients = McpClients::start_with(
            vec![(settings(Duration::from_secs(5)), harness.connector())],
            CancellationToken::new(),
        );
        connected(&clients).await;
        let started = tokio::time::Instant::now();
        let error = tool(&clients, "test_slow").call(serde_json::json!({})).await.unwrap_err().to_string();
        assert!(error.contains("did not answer within 5 seconds"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
        // The server is still there for the next call.
        assert_eq!(tool(&clients, "test_echo").call(serde_json::json!({"text": "still"})).await.unwrap(), "still");
        clients.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashing_server_fails_the_call_and_is_reconnected_with_its_tools() {
        let harness = Harness::new();
        let clients = McpClients::start_with(
            vec![(settings(Duration::from_secs(5)), harness.connector())],
            CancellationToken::new(),
        );
        connected(&clients).await;
        let crash = tool(&clients, "test_crash");
        let error = crash.call(serde_json::json!({})).await.unwrap_err().to_string();
        assert!(error.contains("MCP server `test`") && error.contains("try again later"), "{error}");
        // While it is away its tools are not offered and a held one says why.
        reached(&clients, |state| matches!(state, ServerState::Failed(_))).await;
        assert!(clients.tools().is_empty());
        let away = crash.call(serde_json::json!({})).await.unwrap_err().to_string();
        assert!(away.contains("not connected"), "{away}");
        // After the backoff it is back, with its tools.
        connected(&clients).await;
        assert_eq!(harness.connects.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(clients.status()[0].connections, 2);
        assert_eq!(tool(&clients, "test_echo").call(serde_json::json!({"text": "back"})).await.unwrap(), "back");
        clients.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_is_retried_with_backoff_without_blocking() {
        let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connects.clone();
        let connector = Connector::Custom(Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(std::future::pending())
        }));
        let clients =
            McpClients::start_with(vec![(settings(Duration::from_secs(5)), connector)], CancellationToken::new());
        // Start returned at once; the server is connecting.
        assert_eq!(clients.status()[0].state, ServerState::Connecting);
        reached(&clients, |state| matches!(state, ServerState::Failed(reason) if reason.contains("within 5 seconds")))
            .await;
        // 5 s attempt, 1 s wait, 5 s, 2 s, 5 s: three attempts within 18 s.
        tokio::time::sleep(Duration::from_secs(13)).await;
        assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 3);
        clients.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_server_is_not_retried_and_a_disabled_one_not_started() {
        let connects = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connects.clone();
        let connector = Connector::Custom(Arc::new(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async { Err(ConnectError::Refused("no sandbox".to_owned())) })
        }));
        let disabled = settings(Duration::from_secs(5)).with_enabled(false);
        let clients = McpClients::start_with(
            vec![(settings(Duration::from_secs(5)), connector.clone()), (disabled, connector)],
            CancellationToken::new(),
        );
        clients.settled(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(600)).await;
        let status = clients.status();
        assert_eq!(status[0].state, ServerState::Refused("no sandbox".to_owned()));
        assert_eq!(status[1].state, ServerState::Disabled);
        assert_eq!(connects.load(std::sync::atomic::Ordering::SeqCst), 1);
        clients.shutdown().await;
    }
}
