//! From Discord events to [`InboundMessage`]s: the filters (allow-lists, bots) and the mapping
//! (conversation id, sender, mentions, attachments, routing metadata), as pure functions so they
//! are tested without a gateway.

use serde_json::json;
use serenity::model::channel::Message;

use spacebot_core::{Attachment, CHANNEL_KEY, GUILD_KEY, InboundMessage, MessageContent, PARENT_CHANNEL_KEY, Sender};

use crate::settings::DiscordSettings;

/// Metadata: the channel (or thread) id to reply in.
pub(crate) const META_CHANNEL: &str = "discord_channel_id";
/// Metadata: the id of the message being answered (for reactions and threads).
pub(crate) const META_MESSAGE: &str = "discord_message_id";
/// Metadata: whether the message came from a thread.
pub(crate) const META_IS_THREAD: &str = "discord_is_thread";
/// Metadata: the interaction token of a slash command, for answering it in place.
pub(crate) const META_INTERACTION_TOKEN: &str = "discord_interaction_token";
/// Metadata: whether the bot was mentioned (or, on Discord, replied to); read by response modes.
pub(crate) const META_MENTIONS_BOT: &str = spacebot_core::MENTIONS_BOT_KEY;

/// Where a Discord message happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) guild: Option<u64>,
    pub(crate) channel: u64,
    /// The parent channel, when `channel` is a thread.
    pub(crate) parent: Option<u64>,
}

/// Whether the allow-lists admit a message from `author` at `place`.
pub(crate) fn admitted(settings: &DiscordSettings, place: Place, author: u64) -> bool {
    match place.guild {
        None => settings.dm_allowed(author),
        Some(guild) => settings.guild_allowed(guild) && settings.channel_allowed(place.channel, place.parent),
    }
}

/// The conversation id of a place: `{key}:{guild}:{channel}` or `{key}:dm:{user}`.
pub(crate) fn conversation_id(adapter: &str, place: Place, author: u64) -> String {
    match place.guild {
        Some(guild) => format!("{adapter}:{guild}:{}", place.channel),
        None => format!("{adapter}:dm:{author}"),
    }
}

/// Routing metadata every inbound message carries.
pub(crate) fn with_place(message: InboundMessage, place: Place) -> InboundMessage {
    let mut message = message
        .with_metadata(META_CHANNEL, json!(place.channel.to_string()))
        .with_metadata(CHANNEL_KEY, json!(place.channel.to_string()))
        .with_metadata(META_IS_THREAD, json!(place.parent.is_some()));
    if let Some(guild) = place.guild {
        message = message.with_metadata(GUILD_KEY, json!(guild.to_string()));
    }
    if let Some(parent) = place.parent {
        message = message.with_metadata(PARENT_CHANNEL_KEY, json!(parent.to_string()));
    }
    message.with_direct(place.guild.is_none())
}

/// Maps a gateway message to an inbound message, or `None` when it must not be handed in (the
/// bot's own, another bot's unless allowed, or outside the allow-lists).
pub(crate) fn map_message(
    settings: &DiscordSettings,
    bot_user: u64,
    message: &Message,
    parent: Option<u64>,
) -> Option<InboundMessage> {
    let author = message.author.id.get();
    if author == bot_user || (message.author.bot && !settings.allow_bots) {
        return None;
    }
    let place = Place { guild: message.guild_id.map(|g| g.get()), channel: message.channel_id.get(), parent };
    if !admitted(settings, place, author) {
        return None;
    }

    let text = render_mentions(message);
    let attachments: Vec<Attachment> = message
        .attachments
        .iter()
        .map(|a| {
            let mut attachment = Attachment::new(a.filename.clone(), a.url.clone());
            attachment.mime_type = a.content_type.clone();
            attachment.size_bytes = Some(u64::from(a.size));
            attachment
        })
        .collect();
    let content = if attachments.is_empty() {
        MessageContent::Text { text }
    } else {
        MessageContent::Media { text: (!text.is_empty()).then_some(text), attachments }
    };

    let mentions_bot = message.mentions.iter().any(|u| u.id.get() == bot_user)
        || message.referenced_message.as_ref().is_some_and(|r| r.author.id.get() == bot_user);
    let display = message
        .member
        .as_ref()
        .and_then(|m| m.nick.clone())
        .or_else(|| message.author.global_name.clone())
        .unwrap_or_else(|| message.author.name.clone());

    let inbound = InboundMessage::text(
        "discord",
        conversation_id(&settings.name, place, author),
        Sender::new(author.to_string()).with_display_name(display),
        "",
    )
    .with_content(content)
    .with_id(format!("discord:{}", message.id.get()))
    .with_adapter(settings.name.clone())
    .with_timestamp(chrono_from(message))
    .with_metadata(META_MESSAGE, json!(message.id.get().to_string()))
    .with_metadata(META_MENTIONS_BOT, json!(mentions_bot));
    Some(with_place(inbound, place))
}

/// The content with `<@id>` and `<@!id>` replaced by `@name` for every mentioned user.
fn render_mentions(message: &Message) -> String {
    let mut text = message.content.clone();
    for user in &message.mentions {
        let name = user.global_name.clone().unwrap_or_else(|| user.name.clone());
        let id = user.id.get();
        text =
            text.replace(&format!("<@{id}>"), &format!("@{name}")).replace(&format!("<@!{id}>"), &format!("@{name}"));
    }
    text
}

fn chrono_from(message: &Message) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(message.timestamp.unix_timestamp(), 0).unwrap_or_else(chrono::Utc::now)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const BOT: u64 = 42;

    fn message(json: Value) -> Message {
        let mut base = json!({
            "id": "1000", "channel_id": "10", "author": {"id": "7", "username": "alice", "discriminator": "0",
            "avatar": null, "global_name": "Alice"},
            "content": "hello", "timestamp": "2025-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "pinned": false, "type": 0, "guild_id": "1",
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut base, json) {
            base.extend(extra);
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn guild_messages_map_to_their_channel_conversation() {
        let settings = DiscordSettings::new("t");
        let inbound = map_message(&settings, BOT, &message(json!({})), None).unwrap();
        assert_eq!(inbound.conversation.as_str(), "discord:1:10");
        assert_eq!(inbound.source, "discord");
        assert_eq!(inbound.adapter, "discord");
        assert_eq!(inbound.sender.id, "7");
        assert_eq!(inbound.sender.label(), "Alice");
        assert_eq!(inbound.content.text(), "hello");
        assert!(!inbound.direct);
        assert_eq!(inbound.metadata[GUILD_KEY], json!("1"));
        assert_eq!(inbound.metadata[META_MENTIONS_BOT], json!(false));
    }

    #[test]
    fn threads_and_dms_are_their_own_conversations() {
        let settings = DiscordSettings::new("t").with_dm_users(["7"]).with_instance("ops");
        let thread = map_message(&settings, BOT, &message(json!({"channel_id": "99"})), Some(10)).unwrap();
        assert_eq!(thread.conversation.as_str(), "discord:ops:1:99");
        assert_eq!(thread.metadata[PARENT_CHANNEL_KEY], json!("10"));
        let dm = map_message(&settings, BOT, &message(json!({"guild_id": null, "channel_id": "55"})), None).unwrap();
        assert_eq!(dm.conversation.as_str(), "discord:ops:dm:7");
        assert!(dm.direct);
    }

    #[test]
    fn own_and_bot_messages_are_dropped() {
        let settings = DiscordSettings::new("t");
        let own = message(json!({"author": {"id": "42", "username": "me", "discriminator": "0", "avatar": null}}));
        assert!(map_message(&settings, BOT, &own, None).is_none());
        let bot =
            message(json!({"author": {"id": "8", "username": "b", "discriminator": "0", "avatar": null, "bot": true}}));
        assert!(map_message(&settings, BOT, &bot, None).is_none());
        assert!(map_message(&settings.with_allow_bots(true), BOT, &bot, None).is_some());
    }

    #[test]
    fn allow_lists_filter_guilds_channels_and_dms() {
        let settings = DiscordSettings::new("t").with_guilds([1]).with_channels([10]);
        assert!(map_message(&settings, BOT, &message(json!({"guild_id": "2"})), None).is_none());
        assert!(map_message(&settings, BOT, &message(json!({"channel_id": "11"})), None).is_none());
        assert!(map_message(&settings, BOT, &message(json!({"channel_id": "99"})), Some(10)).is_some());
        let dm = message(json!({"guild_id": null}));
        assert!(map_message(&settings, BOT, &dm, None).is_none(), "DMs need the sender listed");
    }

    #[test]
    fn mentions_are_rendered_and_detected() {
        let mentioned = message(json!({
            "content": "<@42> ping <@!9>",
            "mentions": [
                {"id": "42", "username": "spacebot", "discriminator": "0", "avatar": null, "bot": true},
                {"id": "9", "username": "bob", "discriminator": "0", "avatar": null},
            ],
        }));
        let inbound = map_message(&DiscordSettings::new("t"), BOT, &mentioned, None).unwrap();
        assert_eq!(inbound.content.text(), "@spacebot ping @bob");
        assert_eq!(inbound.metadata[META_MENTIONS_BOT], json!(true));
    }

    #[test]
    fn attachments_arrive_as_references() {
        let with_file = message(json!({"content": "", "attachments": [{"id": "5", "filename": "cat.png",
            "url": "https://cdn.example/cat.png", "proxy_url": "https://cdn.example/cat.png", "size": 1234,
            "content_type": "image/png"}]}));
        let inbound = map_message(&DiscordSettings::new("t"), BOT, &with_file, None).unwrap();
        let MessageContent::Media { text, attachments } = inbound.content else { panic!("not media") };
        assert_eq!(text, None);
        assert_eq!(attachments[0].url, "https://cdn.example/cat.png");
        assert_eq!(attachments[0].mime_type.as_deref(), Some("image/png"));
        assert_eq!(attachments[0].size_bytes, Some(1234));
    }
}
