//! Every outbound path goes through the outbox's one scrubber: a reply sent with `reply`, a
//! reaction, the answer to `/status` (which quotes a worker's own status), a relayed worker
//! result, and the events observers see. What the log records is what was sent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;

use spacebot_agent::{ChannelSettings, REACT_TOOL, SET_STATUS_TOOL, SPAWN_WORKER_TOOL};
use spacebot_core::{OutboundResponse, REDACTED, RuntimeEvent, Scrubber};
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, done, reply};
use crate::support::{AGENT, CONV, idle, start_scrubbed};

/// A value the configuration says is secret.
const CONFIGURED: &str = "hunter2-configured-value";
/// A credential-shaped token nobody configured.
const SHAPED: &str = "sk-abcdefghijklmnopqrstuvwx0123";

fn texts_of(response: &OutboundResponse) -> Vec<String> {
    match response {
        OutboundResponse::Text { text } => vec![text.clone()],
        OutboundResponse::Reaction { emoji } => vec![emoji.clone()],
        other => vec![format!("{other:?}")],
    }
}

fn drain(events: &mut broadcast::Receiver<RuntimeEvent>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn no_outbound_path_carries_a_secret() {
    let m = Models::new();
    let log = Arc::new(MemoryLog::new());
    let scrubber = Scrubber::new().with_secrets([CONFIGURED]);
    let h = start_scrubbed(vec![m.profile(ChannelSettings::default())], &[AGENT], log.clone(), scrubber).await;
    let mut events = h.runtime.handle().subscribe();

    m.channel.push_all([
        ScriptedTurn::tool_calls(vec![
            (REACT_TOOL.to_owned(), json!({ "emoji": CONFIGURED })),
            (SPAWN_WORKER_TOOL.to_owned(), json!({ "task": "look up the token" })),
        ]),
        reply(&format!("Here it is: {CONFIGURED} and {SHAPED}")),
        reply(&format!("The worker says: {CONFIGURED}")),
    ]);
    m.worker.push_all([
        ScriptedTurn::tool_call(
            SET_STATUS_TOOL,
            json!({ "status": format!("found {CONFIGURED}"), "kind": "progress" }),
        ),
        done(&format!("the token is {SHAPED}")).delay(Duration::from_secs(10)),
    ]);

    h.say(CONV, "what is the token?");
    idle().await;
    h.say(CONV, "/status");
    // The reply, the answer to /status while the worker runs, and the relay of its result.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let texts = h.wait_texts(CONV, 3).await;

    let sent: Vec<String> = h.adapter.sent().iter().flat_map(|(_, response)| texts_of(response)).collect();
    let logged: Vec<String> = log.messages().into_iter().map(|message| message.text).collect();
    let observed = drain(&mut events);
    for (path, items) in [("sent", &sent), ("logged", &logged), ("events", &observed)] {
        for item in items.iter() {
            assert!(!item.contains(CONFIGURED) && !item.contains(SHAPED), "{path} carries a secret: {item}");
        }
    }
    // Each path was really taken, and masked rather than dropped.
    assert!(sent.contains(&REDACTED.to_owned()), "the reaction: {sent:?}");
    assert!(texts.iter().any(|t| t == &format!("Here it is: {REDACTED} and {REDACTED}")), "the reply: {texts:?}");
    assert!(
        texts.iter().any(|t| t.starts_with("Status:") && t.contains(&format!("found {REDACTED}"))),
        "/status: {texts:?}"
    );
    assert!(texts.iter().any(|t| t == &format!("The worker says: {REDACTED}")), "the relay: {texts:?}");
    assert!(logged.iter().any(|t| t == &format!("Here it is: {REDACTED} and {REDACTED}")), "the log: {logged:?}");
    assert!(observed.iter().any(|e| e.contains("Finished") && e.contains(REDACTED)), "the worker's end: {observed:?}");
    h.shutdown().await;
}
