//! A reply is previewed as the model writes it: the channel streams its model calls and
//! publishes `reply_delta` events for the text that will be the reply, then sends the reply
//! whole; a preview that turns out not to be the reply is taken back with `reply_discarded`.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::{REACT_TOOL, REPLY_TOOL};
use spacebot_core::{MessageId, OutboundResponse, RuntimeEvent, Scrubber, TurnOutcome};
use spacebot_testing::{MemoryLog, ScriptedModel, ScriptedTurn};

use crate::support::{AGENT, CONV, profile, start, start_scrubbed};

/// What the events say of the reply preview, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Delta { text: String, tentative: bool },
    Discarded,
    Sent(String),
}

fn previews(events: &[RuntimeEvent], message: &MessageId) -> Vec<Seen> {
    events
        .iter()
        .filter_map(|event| match event {
            RuntimeEvent::ReplyDelta { message: Some(id), text, tentative, .. } if id == message => {
                Some(Seen::Delta { text: text.clone(), tentative: *tentative })
            }
            RuntimeEvent::ReplyDiscarded { message: Some(id), .. } if id == message => Some(Seen::Discarded),
            RuntimeEvent::ResponseSent { response: OutboundResponse::Text { text }, .. } => {
                Some(Seen::Sent(text.clone()))
            }
            RuntimeEvent::ReplyDelta { .. } | RuntimeEvent::ReplyDiscarded { .. } => {
                panic!("a preview for another message: {event:?}")
            }
            _ => None,
        })
        .collect()
}

/// The previewed text joined, and whether each piece was tentative.
fn joined(seen: &[Seen]) -> (String, Vec<bool>) {
    let mut text = String::new();
    let mut tentative = Vec::new();
    for item in seen {
        if let Seen::Delta { text: piece, tentative: flag } = item {
            text.push_str(piece);
            tentative.push(*flag);
        }
    }
    (text, tentative)
}

#[tokio::test(start_paused = true)]
async fn a_reply_call_is_previewed_word_by_word_then_sent_whole() {
    let model = Arc::new(ScriptedModel::new());
    let reply = "The answer is forty-two, as the long computation found.";
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": reply })));
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    let inbound = h.say(CONV, "what is the answer?");
    let events = h.events_through_turn().await;
    let seen = previews(&events, &inbound.id);
    let (previewed, tentative) = joined(&seen);
    assert!(tentative.len() >= 2, "the reply arrives in several pieces: {seen:#?}");
    assert!(tentative.iter().all(|flag| !flag), "a reply call's text is certain: {seen:#?}");
    assert!(reply.starts_with(&previewed) && !previewed.is_empty(), "{previewed:?}");
    assert_eq!(seen.last(), Some(&Seen::Sent(reply.to_owned())), "the reply itself comes last: {seen:#?}");
    assert!(!seen.contains(&Seen::Discarded), "{seen:#?}");
    assert!(
        events.iter().any(|event| matches!(event, RuntimeEvent::TurnFinished { outcome: TurnOutcome::Replied, .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn text_before_a_tool_call_is_tentative_and_taken_back() {
    let model = Arc::new(ScriptedModel::new());
    model.push(ScriptedTurn::text_and_tool_call(
        "Let me react first, then answer.",
        REACT_TOOL,
        json!({"emoji": "👍"}),
    ));
    model.push(ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": "Done reacting, here is the answer." })));
    let mut h = start(profile(&model), Arc::new(MemoryLog::new())).await;

    let inbound = h.say(CONV, "hi");
    let seen = previews(&h.events_through_turn().await, &inbound.id);
    let discarded = seen.iter().position(|item| item == &Seen::Discarded).expect("the text is taken back");
    let (before, flags) = joined(&seen[..discarded]);
    assert_eq!(before, "Let me react first, then answer.");
    assert!(flags.iter().all(|flag| *flag), "text a model may follow with calls is tentative: {seen:#?}");
    let (after, flags) = joined(&seen[discarded..]);
    assert!("Done reacting, here is the answer.".starts_with(&after) && !after.is_empty(), "{seen:#?}");
    assert!(flags.iter().all(|flag| !flag), "{seen:#?}");
    assert_eq!(seen.last(), Some(&Seen::Sent("Done reacting, here is the answer.".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn a_turn_that_fails_after_a_preview_takes_it_back_before_its_notice() {
    let model = Arc::new(ScriptedModel::new());
    // Plain text that carries a secret is refused, and the model never says it properly.
    let secret = "hunter2-configured-value";
    for _ in 0..10 {
        model.push(ScriptedTurn::text(format!("Sure, the password is {secret} for you.")));
    }
    let scrubber = Scrubber::new().with_secrets([secret]);
    let mut h = start_scrubbed(vec![profile(&model)], &[AGENT], Arc::new(MemoryLog::new()), scrubber).await;

    let inbound = h.say(CONV, "the password?");
    let events = h.events_through_turn().await;
    let seen = previews(&events, &inbound.id);
    let (previewed, _) = joined(&seen[..seen.iter().position(|item| item == &Seen::Discarded).expect("taken back")]);
    assert!(previewed.starts_with("Sure, the password is [redacted]"), "{seen:#?}");
    assert!(!format!("{events:?}").contains(secret), "no event carries the secret");
    let Some(Seen::Sent(notice)) = seen.last() else { panic!("{seen:#?}") };
    assert!(notice.starts_with('⚠'), "the turn failed visibly: {notice}");
    let last_discard = seen.iter().rposition(|item| item == &Seen::Discarded).expect("discarded");
    assert_eq!(last_discard, seen.len() - 2, "the preview is taken back before the notice: {seen:#?}");
}
