//! From Bot API updates to [`InboundMessage`]s: filters and mapping as pure functions.

use chrono::{DateTime, Utc};
use frankenstein::types::{ChatType, Message, MessageEntity, MessageEntityType};
use frankenstein::updates::{Update, UpdateContent};
use serde_json::json;

use spacebot_core::{Attachment, CHANNEL_KEY, InboundMessage, MENTIONS_BOT_KEY, MessageContent, Sender};

use crate::settings::TelegramSettings;

/// Metadata: the chat to answer in (a number).
pub(crate) const META_CHAT: &str = "telegram_chat_id";
/// Metadata: the message's id in its chat (reactions, replies).
pub(crate) const META_MESSAGE: &str = "telegram_message_id";
/// Metadata: the forum topic the message is in, when it is.
pub(crate) const META_TOPIC: &str = "telegram_thread_id";
/// Metadata: whether the chat is a forum (topics can be created in it).
pub(crate) const META_FORUM: &str = "telegram_is_forum";
/// How an attachment names its Telegram file: `telegram:file:{file_id}`.
pub(crate) const FILE_PREFIX: &str = "telegram:file:";

/// Who the bot is (`getMe`): commands and mentions are matched against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) id: u64,
    pub(crate) username: String,
}

/// `{key}:{chat}`, plus `:{topic}` for a forum topic.
pub(crate) fn conversation_id(adapter: &str, chat: i64, topic: Option<i32>) -> String {
    match topic {
        Some(topic) => format!("{adapter}:{chat}:{topic}"),
        None => format!("{adapter}:{chat}"),
    }
}

/// Maps an update to an inbound message, or `None` when it is not one to hand in: not a new
/// message (edits, reactions, member changes), the bot's own, another bot's unless allowed, a
/// command addressed to another bot, or outside the allow-lists.
pub(crate) fn map_update(settings: &TelegramSettings, bot: &Identity, update: &Update) -> Option<InboundMessage> {
    let UpdateContent::Message(message) = &update.content else { return None };
    map_message(settings, bot, message)
}

fn map_message(settings: &TelegramSettings, bot: &Identity, message: &Message) -> Option<InboundMessage> {
    let from = message.from.as_ref()?;
    if from.id == bot.id || (from.is_bot && !settings.allow_bots) {
        return None;
    }
    let chat = message.chat.id;
    let direct = matches!(message.chat.type_field, ChatType::Private);
    if matches!(message.chat.type_field, ChatType::Channel) || !settings.admitted(chat, from.id, direct) {
        return None;
    }
    let topic = message.message_thread_id.filter(|_| message.is_topic_message == Some(true));
    let text = message.text.as_deref().or(message.caption.as_deref()).unwrap_or_default();
    let entities = message.entities.as_deref().or(message.caption_entities.as_deref()).unwrap_or_default();

    let command = match leading_command(text, entities) {
        Some((_, Some(target))) if !target.eq_ignore_ascii_case(&bot.username) => return None,
        Some((name, _)) => Some(name),
        None => None,
    };
    let mentions_bot = command.is_some() || mentions(text, entities, bot) || replies_to_bot(message, bot);
    let attachments = attachments(message);
    let content = match command {
        Some(name) => {
            let args = text.split_once(char::is_whitespace).map_or("", |(_, rest)| rest.trim());
            MessageContent::Command { name: name.to_lowercase(), args: args.to_owned() }
        }
        None if attachments.is_empty() => MessageContent::Text { text: text.to_owned() },
        None => MessageContent::Media { text: (!text.is_empty()).then(|| text.to_owned()), attachments },
    };
    if content.text().trim().is_empty() && !matches!(content, MessageContent::Media { .. }) {
        // A service message (someone joined, a pinned message, a topic created).
        return None;
    }

    let mut sender = Sender::new(from.id.to_string());
    let name = from.username.clone().unwrap_or_else(|| {
        [Some(from.first_name.as_str()), from.last_name.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ")
    });
    if !name.trim().is_empty() {
        sender = sender.with_display_name(name);
    }
    let timestamp = i64::try_from(message.date).ok().and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    let mut inbound = InboundMessage::text("telegram", conversation_id(&settings.name, chat, topic), sender, "")
        .with_content(content)
        .with_id(format!("{}:{chat}:{}", settings.name, message.message_id))
        .with_adapter(settings.name.clone())
        .with_direct(direct)
        .with_metadata(META_CHAT, json!(chat))
        .with_metadata(CHANNEL_KEY, json!(chat.to_string()))
        .with_metadata(META_MESSAGE, json!(message.message_id))
        .with_metadata(META_FORUM, json!(message.chat.is_forum == Some(true)))
        .with_metadata(MENTIONS_BOT_KEY, json!(mentions_bot));
    if let Some(topic) = topic {
        inbound = inbound.with_metadata(META_TOPIC, json!(topic));
    }
    if let Some(timestamp) = timestamp {
        inbound.timestamp = timestamp;
    }
    Some(inbound)
}

/// The text an entity covers (offsets are in UTF-16 code units).
fn entity_text(text: &str, entity: &MessageEntity) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let start = usize::from(entity.offset);
    let end = start.checked_add(usize::from(entity.length))?;
    String::from_utf16(units.get(start..end)?).ok()
}

/// A `/command` or `/command@bot` at the very start: its name and the bot it names, if any.
fn leading_command(text: &str, entities: &[MessageEntity]) -> Option<(String, Option<String>)> {
    let entity = entities.iter().find(|e| e.type_field == MessageEntityType::BotCommand && e.offset == 0)?;
    let command = entity_text(text, entity)?;
    let command = command.strip_prefix('/')?;
    let (name, target) = match command.split_once('@') {
        Some((name, target)) => (name, Some(target.to_owned())),
        None => (command, None),
    };
    (!name.is_empty()).then(|| (name.to_owned(), target))
}

fn mentions(text: &str, entities: &[MessageEntity], bot: &Identity) -> bool {
    entities.iter().any(|entity| match entity.type_field {
        MessageEntityType::Mention => entity_text(text, entity)
            .and_then(|m| m.strip_prefix('@').map(|name| name.eq_ignore_ascii_case(&bot.username)))
            .unwrap_or(false),
        MessageEntityType::TextMention => entity.user.as_ref().is_some_and(|user| user.id == bot.id),
        _ => false,
    })
}

/// A reply to one of the bot's messages. In a forum topic every message replies to the topic's
/// first message, which is not a reply to the bot even when the bot opened the topic.
fn replies_to_bot(message: &Message, bot: &Identity) -> bool {
    message.reply_to_message.as_ref().is_some_and(|replied| {
        Some(replied.message_id) != message.message_thread_id && replied.from.as_ref().is_some_and(|f| f.id == bot.id)
    })
}

/// Documents and photos, by reference: `telegram:file:{file_id}`, which the Bot API's `getFile`
/// resolves (its download URL carries the bot token, so it is never handed in).
fn attachments(message: &Message) -> Vec<Attachment> {
    let mut found = Vec::new();
    if let Some(document) = &message.document {
        let name = document.file_name.clone().unwrap_or_else(|| document.file_id.clone());
        let mut attachment = Attachment::new(name, format!("{FILE_PREFIX}{}", document.file_id));
        attachment.mime_type = document.mime_type.clone();
        attachment.size_bytes = document.file_size;
        found.push(attachment);
    }
    if let Some(photo) =
        message.photo.as_ref().and_then(|sizes| sizes.iter().max_by_key(|p| u64::from(p.width) * u64::from(p.height)))
    {
        let mut attachment = Attachment::new("photo.jpg", format!("{FILE_PREFIX}{}", photo.file_id));
        attachment.mime_type = Some("image/jpeg".to_owned());
        attachment.size_bytes = photo.file_size;
        found.push(attachment);
    }
    found
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn bot() -> Identity {
        Identity { id: 4242, username: "spacebot_test_bot".into() }
    }

    fn settings() -> TelegramSettings {
        TelegramSettings::new("t").with_dm_users(["7"])
    }

    /// An update as the Bot API sends it, with `extra` merged into the message.
    fn update(extra: Value) -> Update {
        let mut message = json!({
            "message_id": 11, "date": 1_700_000_000,
            "chat": {"id": -1001, "type": "supergroup", "title": "g", "is_forum": true},
            "from": {"id": 7, "is_bot": false, "first_name": "Alice", "username": "alice"},
            "text": "hello"
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut message, extra) {
            base.extend(extra);
        }
        serde_json::from_value(json!({"update_id": 1, "message": message})).expect("an update")
    }

    fn entity(kind: &str, offset: u16, length: u16) -> Value {
        json!({"type": kind, "offset": offset, "length": length})
    }

    #[test]
    fn groups_topics_and_private_chats_get_distinct_conversations() {
        let group = map_update(&settings(), &bot(), &update(json!({}))).expect("handed in");
        assert_eq!(group.conversation.as_str(), "telegram:-1001");
        assert_eq!(group.id.as_str(), "telegram:-1001:11");
        assert_eq!(group.sender.id, "7");
        assert_eq!(group.sender.label(), "alice");
        assert!(!group.direct);
        assert_eq!(group.timestamp.timestamp(), 1_700_000_000);

        let topic = map_update(&settings(), &bot(), &update(json!({"message_thread_id": 5, "is_topic_message": true})))
            .expect("handed in");
        assert_eq!(topic.conversation.as_str(), "telegram:-1001:5");
        assert_eq!(topic.metadata[META_TOPIC], json!(5));

        // A reply thread in a group that is not a forum is not a topic.
        let reply = map_update(&settings(), &bot(), &update(json!({"message_thread_id": 5}))).expect("handed in");
        assert_eq!(reply.conversation.as_str(), "telegram:-1001");

        let private = update(json!({"chat": {"id": 7, "type": "private", "first_name": "Alice"}}));
        let private = map_update(&settings(), &bot(), &private).expect("handed in");
        assert!(private.direct);
        assert_eq!(private.conversation.as_str(), "telegram:7");
    }

    #[test]
    fn own_bot_and_unlisted_messages_are_dropped() {
        let own = update(json!({"from": {"id": 4242, "is_bot": true, "first_name": "me"}}));
        assert!(map_update(&settings(), &bot(), &own).is_none());
        let other_bot = update(json!({"from": {"id": 9, "is_bot": true, "first_name": "b"}}));
        assert!(map_update(&settings(), &bot(), &other_bot).is_none());
        assert!(map_update(&settings().with_allow_bots(true), &bot(), &other_bot).is_some());
        let stranger = update(
            json!({"chat": {"id": 8, "type": "private", "first_name": "S"}, "from": {"id": 8, "is_bot": false, "first_name": "S"}}),
        );
        assert!(map_update(&settings(), &bot(), &stranger).is_none(), "private chats only from listed users");
        assert!(map_update(&settings().with_chats([-2002]), &bot(), &update(json!({}))).is_none());
        let joined = update(json!({"text": null, "new_chat_members": []}));
        assert!(map_update(&settings(), &bot(), &joined).is_none(), "service messages are not handed in");
    }

    #[test]
    fn commands_are_read_with_or_without_the_bot_name() {
        let command = |text: &str, length: u16| {
            map_update(
                &settings(),
                &bot(),
                &update(json!({"text": text, "entities": [entity("bot_command", 0, length)]})),
            )
        };
        let stop = command("/stop now please", 5).expect("handed in");
        assert_eq!(stop.content, MessageContent::Command { name: "stop".into(), args: "now please".into() });
        assert_eq!(stop.metadata[MENTIONS_BOT_KEY], json!(true));
        let addressed = command("/Pause@spacebot_test_bot", 24).expect("handed in");
        assert_eq!(addressed.content, MessageContent::Command { name: "pause".into(), args: String::new() });
        assert!(command("/pause@other_bot", 16).is_none(), "a command for another bot is not ours");
    }

    #[test]
    fn mentions_and_replies_to_the_bot_are_marked() {
        let mentioned = |text: &str, entities: Value| {
            let message = map_update(&settings(), &bot(), &update(json!({"text": text, "entities": entities})));
            message.expect("handed in").metadata[MENTIONS_BOT_KEY].clone()
        };
        // "😀 " is three UTF-16 units: the offset counts them, not bytes or chars.
        assert_eq!(mentioned("😀 @Spacebot_Test_Bot hi", json!([entity("mention", 3, 18)])), json!(true));
        assert_eq!(mentioned("@someone_else hi", json!([entity("mention", 0, 13)])), json!(false));
        let text_mention = json!([{"type": "text_mention", "offset": 0, "length": 3, "user": {"id": 4242, "is_bot": true, "first_name": "bot"}}]);
        assert_eq!(mentioned("Bot hi", text_mention), json!(true));

        let bot_message = json!({"message_id": 3, "date": 1, "chat": {"id": -1001, "type": "supergroup"}, "from": {"id": 4242, "is_bot": true, "first_name": "bot"}});
        let reply = map_update(&settings(), &bot(), &update(json!({"reply_to_message": bot_message.clone()})));
        assert_eq!(reply.expect("handed in").metadata[MENTIONS_BOT_KEY], json!(true));
        let in_topic =
            update(json!({"reply_to_message": bot_message, "message_thread_id": 3, "is_topic_message": true}));
        let in_topic = map_update(&settings(), &bot(), &in_topic).expect("handed in");
        assert_eq!(in_topic.metadata[MENTIONS_BOT_KEY], json!(false), "the topic's first message is not a reply");
    }

    #[test]
    fn documents_and_photos_are_references_without_the_token() {
        let message = update(json!({
            "text": null, "caption": "look",
            "document": {"file_id": "DOC1", "file_unique_id": "u1", "file_name": "r.pdf", "mime_type": "application/pdf", "file_size": 10},
            "photo": [{"file_id": "P1", "file_unique_id": "p1", "width": 90, "height": 90}, {"file_id": "P2", "file_unique_id": "p2", "width": 800, "height": 600, "file_size": 5000}]
        }));
        let message = map_update(&settings(), &bot(), &message).expect("handed in");
        let MessageContent::Media { text, attachments } = &message.content else { panic!("{:?}", message.content) };
        assert_eq!(text.as_deref(), Some("look"));
        assert_eq!(attachments[0].url, "telegram:file:DOC1");
        assert_eq!(attachments[0].filename, "r.pdf");
        assert_eq!(attachments[0].size_bytes, Some(10));
        assert_eq!(attachments[1].url, "telegram:file:P2", "the largest photo size");
    }

    proptest! {
        /// Entities come from the network: offsets and lengths past the text, inside a surrogate
        /// pair, or overlapping never panic the mapping.
        #[test]
        fn any_entities_on_any_text_map_without_panicking(
            text in "[a-z/@ _😀é]{0,40}",
            entities in proptest::collection::vec((0u16..60, 0u16..60, 0usize..4), 0..6),
        ) {
            let kinds = ["bot_command", "mention", "text_mention", "bold"];
            let entities: Vec<Value> = entities
                .into_iter()
                .map(|(offset, length, kind)| json!({"type": kinds[kind], "offset": offset, "length": length,
                    "user": {"id": 4242, "is_bot": true, "first_name": "b"}}))
                .collect();
            let mapped = map_update(&settings(), &bot(), &update(json!({"text": text, "entities": entities})));
            if let Some(message) = mapped {
                prop_assert_eq!(message.conversation.as_str(), "telegram:-1001");
            }
        }
    }
}
