//! What Discord and Slack deliver: any bytes read as the platform's payload and mapped to an
//! [`InboundMessage`] as the adapters map it.

use spacebot_core::{InboundMessage, MessageContent};
use spacebot_discord::DiscordSettings;
use spacebot_slack::SlackSettings;

/// The bot's own user id on Discord, as the fuzz inputs may mention it.
const DISCORD_BOT: u64 = 42;
/// The bot's own user id on Slack.
const SLACK_BOT: &str = "UBOT";

/// What every mapped message keeps: it names its adapter and has an id and a conversation.
fn check_mapped(message: &InboundMessage, adapter: &str) {
    assert_eq!(message.adapter, adapter, "{message:?}");
    assert!(!message.id.as_str().is_empty(), "no id: {message:?}");
    assert!(message.conversation.as_str().starts_with(adapter), "conversation outside {adapter}: {message:?}");
    if let MessageContent::Command { name, .. } = &message.content {
        assert!(!name.is_empty(), "a command without a name: {message:?}");
    }
}

/// Reads `data` as a Discord gateway payload (or a bare message) and maps it, with open
/// allow-lists (bots and every DM admitted) and with narrow ones, in a channel and in a thread.
pub fn check_discord(data: &[u8]) {
    let settings = [
        DiscordSettings::new("token").with_allow_bots(true).with_dm_users(["*"]),
        DiscordSettings::new("token").with_guilds([1]).with_channels([10]).with_dm_users(["7"]),
    ];
    for settings in &settings {
        for parent in [None, Some(10)] {
            if let Some(message) = spacebot_discord::fuzzing::map_payload(settings, DISCORD_BOT, parent, data) {
                check_mapped(&message, "discord");
            }
        }
    }
}

/// Reads `data` as a Slack push event, event callback or slash command and maps it, with open
/// allow-lists (bots and every DM admitted) and with narrow ones.
pub fn check_slack(data: &[u8]) {
    let settings = [
        SlackSettings::new("xoxb-token", "xapp-token").with_allow_bots(true).with_dm_users(["*"]),
        SlackSettings::new("xoxb-token", "xapp-token")
            .with_workspaces(["T1"])
            .with_channels(["C1"])
            .with_dm_users(["U1"]),
    ];
    for settings in &settings {
        if let Some(message) = spacebot_slack::fuzzing::map_payload(settings, SLACK_BOT, data) {
            check_mapped(&message, "slack");
        }
    }
}
