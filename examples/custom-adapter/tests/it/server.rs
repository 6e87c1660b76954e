//! A LineChat server for the tests: the real protocol on a local port, with everything the bot
//! did recorded and refusals on demand.
//!
//! Messages said while the bot is not listening wait for it, as on a real chat server, so a test
//! can drop the event connection and go on talking.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use example_custom_adapter::protocol::{BotLine, Room, ServerLine};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

#[derive(Default)]
struct State {
    next_id: u64,
    /// Every command the bot sent, in order (`LISTEN` included).
    commands: Vec<BotLine>,
    /// `MSG` lines said while nobody listened.
    pending: VecDeque<String>,
    /// The open event connection, if any.
    listener: Option<mpsc::UnboundedSender<String>>,
    /// `(code, reason)` refusals for the next commands.
    refusals: VecDeque<(String, String)>,
}

impl State {
    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }
}

/// A running server. Dropping it stops it and closes every connection.
pub(crate) struct LineChatServer {
    address: String,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

impl LineChatServer {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let address = listener.local_addr().expect("a bound address").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let accept = tokio::spawn(accept(listener, state.clone()));
        Self { address, state, accept }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("the state lock is never poisoned")
    }

    /// `user` says `text` in `room`; returns the message id.
    pub(crate) fn post(&self, room: &str, user: &str, text: &str) -> String {
        let mut state = self.state();
        let id = state.id();
        let room = Room::parse(room).expect("a valid room");
        let line = ServerLine::Message { id: id.clone(), room, user: user.to_owned(), text: text.to_owned() };
        let line = line.to_string();
        match &state.listener {
            Some(listener) if listener.send(line.clone()).is_ok() => {}
            _ => state.pending.push_back(line),
        }
        id
    }

    /// Everything the bot asked the server to do, in order.
    pub(crate) fn commands(&self) -> Vec<BotLine> {
        self.state().commands.clone()
    }

    /// Closes the event connection, as a server restart would.
    pub(crate) fn drop_listener(&self) {
        self.state().listener = None;
    }

    /// Refuses the next command with `ERR <code> <reason>`.
    pub(crate) fn refuse_next(&self, code: &str, reason: &str) {
        self.state().refusals.push_back((code.to_owned(), reason.to_owned()));
    }
}

impl Drop for LineChatServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts connections; each runs in the set, which aborts them when this task is aborted.
async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    connections.spawn(serve(socket, state.clone()));
                }
                Err(_) => return,
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn serve(socket: TcpStream, state: Arc<Mutex<State>>) {
    let mut lines = BufReader::new(socket).lines();
    let Ok(Some(first)) = lines.next_line().await else { return };
    let Some(command) = BotLine::parse(&first) else {
        let refusal = ServerLine::Err { code: "bad-command".into(), reason: first };
        let _ = lines.get_mut().get_mut().write_all(format!("{refusal}\n").as_bytes()).await;
        return;
    };
    let (answer, events) = {
        let mut state = state.lock().expect("the state lock is never poisoned");
        state.commands.push(command.clone());
        if let Some((code, reason)) = state.refusals.pop_front() {
            (ServerLine::Err { code, reason }.to_string(), None)
        } else {
            match command {
                BotLine::Listen { .. } => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    for line in state.pending.drain(..) {
                        let _ = tx.send(line);
                    }
                    state.listener = Some(tx);
                    (ServerLine::Welcome.to_string(), Some(rx))
                }
                BotLine::Say { .. } => (format!("OK {}", state.id()), None),
                BotLine::React { .. } | BotLine::Typing { .. } => (ServerLine::Ok.to_string(), None),
            }
        }
    };
    let socket = lines.get_mut().get_mut();
    if socket.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
        return;
    }
    // The event connection stays open until the server drops its sender.
    if let Some(mut events) = events {
        while let Some(line) = events.recv().await {
            if socket.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    }
}
