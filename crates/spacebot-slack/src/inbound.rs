//! From Socket Mode events to [`InboundMessage`]s: filters and mapping as pure functions.

use serde_json::json;
use slack_morphism::prelude::{
    SlackCommandEvent, SlackEventCallbackBody, SlackMessageEventType, SlackPushEventCallback,
};

use spacebot_core::{Attachment, CHANNEL_KEY, GUILD_KEY, InboundMessage, MessageContent, Sender};

use crate::settings::SlackSettings;

/// Metadata: the channel to reply in.
pub(crate) const META_CHANNEL: &str = "slack_channel_id";
/// Metadata: the message's `ts` (for reactions and new threads).
pub(crate) const META_TS: &str = "slack_ts";
/// Metadata: the thread the message is in, when it is.
pub(crate) const META_THREAD_TS: &str = "slack_thread_ts";
/// Metadata: whether the bot was mentioned (or, on Discord, replied to); read by response modes.
pub(crate) const META_MENTIONS_BOT: &str = spacebot_core::MENTIONS_BOT_KEY;

/// The umbrella command (`/spacebot stop`) next to the direct ones (`/stop`).
const UMBRELLA_COMMAND: &str = "spacebot";

fn is_direct(channel: &str) -> bool {
    channel.starts_with('D')
}

/// `{key}:{team}:{channel}`, plus `:{thread_ts}` for a thread.
pub(crate) fn conversation_id(adapter: &str, team: &str, channel: &str, thread_ts: Option<&str>) -> String {
    match thread_ts {
        Some(thread) => format!("{adapter}:{team}:{channel}:{thread}"),
        None => format!("{adapter}:{team}:{channel}"),
    }
}

/// Maps a pushed event to an inbound message, or `None` when it is not one to hand in: not a
/// plain or file message (or an `app_mention`), an edit or a join, the bot's own, another bot's
/// unless allowed, or outside the allow-lists.
///
/// An `app_mention` is the same message as the `message` event Slack also sends for it (same
/// channel and `ts`, so the same id, recorded once); it is handled so an app subscribed to
/// mentions only is still reached, and it always counts as mentioning the bot.
pub(crate) fn map_push(
    settings: &SlackSettings,
    bot_user: &str,
    push: &SlackPushEventCallback,
) -> Option<InboundMessage> {
    let (user, from_bot, channel, origin, content, mention_event) = match &push.event {
        SlackEventCallbackBody::Message(event) => {
            if !matches!(event.subtype, None | Some(SlackMessageEventType::FileShare)) {
                return None;
            }
            let channel = event.origin.channel.as_ref()?.to_string();
            let user = event.sender.user.as_ref()?.to_string();
            (user, event.sender.bot_id.is_some(), channel, &event.origin, event.content.as_ref(), false)
        }
        SlackEventCallbackBody::AppMention(event) if event.edited.is_none() => {
            (event.user.to_string(), false, event.channel.to_string(), &event.origin, Some(&event.content), true)
        }
        _ => return None,
    };
    if user == bot_user || (from_bot && !settings.allow_bots) {
        return None;
    }
    let team = push.team_id.to_string();
    let direct = is_direct(&channel);
    if !settings.admitted(&team, &channel, &user, direct) {
        return None;
    }
    let ts = origin.ts.to_string();
    let thread_ts = origin.thread_ts.as_ref().map(ToString::to_string).filter(|thread| *thread != ts);

    let text = content.and_then(|c| c.text.clone()).unwrap_or_default();
    let attachments: Vec<Attachment> = content
        .and_then(|c| c.files.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|file| {
            let url = file.url_private.as_ref()?.to_string();
            let name = file.name.clone().unwrap_or_else(|| file.id.to_string());
            let mut attachment = Attachment::new(name, url);
            attachment.mime_type = file.mimetype.as_ref().map(ToString::to_string);
            Some(attachment)
        })
        .collect();
    let mentions_bot = mention_event || text.contains(&format!("<@{bot_user}>"));
    let content = if attachments.is_empty() {
        MessageContent::Text { text }
    } else {
        MessageContent::Media { text: (!text.is_empty()).then_some(text), attachments }
    };

    let mut message = InboundMessage::text(
        "slack",
        conversation_id(&settings.name, &team, &channel, thread_ts.as_deref()),
        Sender::new(user),
        "",
    )
    .with_content(content)
    .with_id(format!("slack:{team}:{channel}:{ts}"))
    .with_adapter(settings.name.clone())
    .with_direct(direct)
    .with_metadata(META_CHANNEL, json!(channel))
    .with_metadata(CHANNEL_KEY, json!(channel))
    .with_metadata(GUILD_KEY, json!(team))
    .with_metadata(META_TS, json!(ts))
    .with_metadata(META_MENTIONS_BOT, json!(mentions_bot));
    if let Some(thread) = thread_ts {
        message = message.with_metadata(META_THREAD_TS, json!(thread));
    }
    Some(message)
}

/// Maps a slash command (`/stop now`, or `/spacebot stop now`) to an inbound command, or `None`
/// when outside the allow-lists or empty.
pub(crate) fn map_command(settings: &SlackSettings, command: &SlackCommandEvent) -> Option<InboundMessage> {
    let team = command.team_id.to_string();
    let channel = command.channel_id.to_string();
    let user = command.user_id.to_string();
    let direct = is_direct(&channel);
    if !settings.admitted(&team, &channel, &user, direct) {
        return None;
    }
    let text = command.text.clone().unwrap_or_default();
    let invoked = command.command.to_string();
    let invoked = invoked.trim_start_matches('/');
    let (name, args) = if invoked == UMBRELLA_COMMAND {
        let text = text.trim();
        let (name, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        (name.to_lowercase(), args.trim().to_owned())
    } else {
        (invoked.to_lowercase(), text.trim().to_owned())
    };
    if name.is_empty() {
        return None;
    }
    let message =
        InboundMessage::text("slack", conversation_id(&settings.name, &team, &channel, None), Sender::new(user), "")
            .with_content(MessageContent::Command { name, args })
            .with_id(format!("slack:{team}:command:{}", command.trigger_id))
            .with_adapter(settings.name.clone())
            .with_direct(direct)
            .with_metadata(META_CHANNEL, json!(channel))
            .with_metadata(CHANNEL_KEY, json!(channel))
            .with_metadata(GUILD_KEY, json!(team))
            .with_metadata(META_MENTIONS_BOT, json!(true));
    Some(message)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn push(event: Value) -> SlackPushEventCallback {
        let mut base = json!({"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.000001"});
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, event) {
            base.extend(extra);
        }
        serde_json::from_value(json!({
            "team_id": "T1", "api_app_id": "A1", "event": base, "event_id": "Ev1", "event_time": 1,
        }))
        .unwrap()
    }

    fn settings() -> SlackSettings {
        SlackSettings::new("b", "a").with_dm_users(["U1"])
    }

    #[test]
    fn channel_thread_and_dm_messages_get_distinct_conversations() {
        let top = map_push(&settings(), "UBOT", &push(json!({}))).unwrap();
        assert_eq!(top.conversation.as_str(), "slack:T1:C1");
        assert_eq!(top.id.as_str(), "slack:T1:C1:1.000001");
        assert!(!top.direct);
        let thread = map_push(&settings(), "UBOT", &push(json!({"ts": "1.000002", "thread_ts": "1.000001"}))).unwrap();
        assert_eq!(thread.conversation.as_str(), "slack:T1:C1:1.000001");
        assert_eq!(thread.metadata[META_THREAD_TS], json!("1.000001"));
        let dm = map_push(&settings(), "UBOT", &push(json!({"channel": "D1"}))).unwrap();
        assert!(dm.direct);
        assert_eq!(dm.conversation.as_str(), "slack:T1:D1");
    }

    #[test]
    fn edits_own_and_bot_messages_are_dropped() {
        assert!(map_push(&settings(), "UBOT", &push(json!({"subtype": "message_changed"}))).is_none());
        assert!(map_push(&settings(), "UBOT", &push(json!({"user": "UBOT"}))).is_none());
        assert!(map_push(&settings(), "UBOT", &push(json!({"bot_id": "B9"}))).is_none());
        assert!(map_push(&settings().with_allow_bots(true), "UBOT", &push(json!({"bot_id": "B9"}))).is_some());
    }

    #[test]
    fn mentions_are_detected() {
        let mentioned = map_push(&settings(), "UBOT", &push(json!({"text": "<@UBOT> help"}))).unwrap();
        assert_eq!(mentioned.metadata[META_MENTIONS_BOT], json!(true));
        let plain = map_push(&settings(), "UBOT", &push(json!({"text": "help"}))).unwrap();
        assert_eq!(plain.metadata[META_MENTIONS_BOT], json!(false));
    }

    #[test]
    fn an_app_mention_is_the_message_it_mentions_in() {
        let event = push(json!({"type": "app_mention", "text": "<@UBOT> deploy?", "thread_ts": "0.5"}));
        let mention = map_push(&settings(), "UBOT", &event).expect("an app_mention is handed in");
        assert_eq!(mention.metadata[META_MENTIONS_BOT], json!(true));
        let message =
            map_push(&settings(), "UBOT", &push(json!({"text": "<@UBOT> deploy?", "thread_ts": "0.5"}))).unwrap();
        assert_eq!(mention.id, message.id, "the same message as its `message` event, so it is recorded once");
        assert_eq!(mention.conversation, message.conversation);
        assert_eq!(mention.content.text(), "<@UBOT> deploy?");
        let own = push(json!({"type": "app_mention", "user": "UBOT", "text": "<@UBOT>"}));
        assert!(map_push(&settings(), "UBOT", &own).is_none());
    }
}
