//! The control commands as native slash commands: their registration, and turning an invocation
//! into an inbound [`MessageContent::Command`].
//!
//! The adapter only translates; what `/stop` or `/pause` does is the router's business. A command
//! is deferred at once (Discord wants an answer within 3 s) and the reply the runtime sends later
//! replaces the "thinking" placeholder.

use serde_json::json;
use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::{Command, CommandDataOptionValue, CommandInteraction, CommandOptionType};

use spacebot_core::{InboundMessage, MessageContent, Sender};

use crate::inbound::{META_INTERACTION_TOKEN, META_MENTIONS_BOT, Place, conversation_id, with_place};
use crate::settings::DiscordSettings;

/// The control commands registered as slash commands, with their descriptions.
pub const CONTROL_COMMANDS: &[(&str, &str)] = &[
    ("status", "Show what the agent is doing in this conversation"),
    ("stop", "Stop the agent's current turn and its workers"),
    ("pause", "Pause the agent in this conversation"),
    ("resume", "Resume a paused conversation"),
    ("new", "Start a fresh conversation (forget the current context)"),
];

/// The name of the one optional text option each command takes.
const INPUT_OPTION: &str = "input";

/// The slash command definitions to register.
pub(crate) fn definitions() -> Vec<CreateCommand> {
    CONTROL_COMMANDS
        .iter()
        .map(|(name, description)| {
            CreateCommand::new(*name).description(*description).add_option(
                CreateCommandOption::new(CommandOptionType::String, INPUT_OPTION, "Optional details").required(false),
            )
        })
        .collect()
}

/// Whether the registered commands already are ours (so a reconnect does not rewrite them).
pub(crate) fn up_to_date(registered: &[Command]) -> bool {
    let mut names: Vec<&str> = registered.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let mut ours: Vec<&str> = CONTROL_COMMANDS.iter().map(|(name, _)| *name).collect();
    ours.sort_unstable();
    names == ours
}

/// Maps a command invocation to an inbound message.
pub(crate) fn map_command(settings: &DiscordSettings, command: &CommandInteraction, place: Place) -> InboundMessage {
    let user = command.user.id.get();
    let args = command
        .data
        .options
        .iter()
        .find_map(|option| match &option.value {
            CommandDataOptionValue::String(value) => Some(value.trim().to_owned()),
            _ => None,
        })
        .unwrap_or_default();
    let display = command.user.global_name.clone().unwrap_or_else(|| command.user.name.clone());
    let inbound = InboundMessage::text(
        "discord",
        conversation_id(&settings.name, place, user),
        Sender::new(user.to_string()).with_display_name(display),
        "",
    )
    .with_content(MessageContent::Command { name: command.data.name.clone(), args })
    .with_id(format!("discord:interaction:{}", command.id.get()))
    .with_adapter(settings.name.clone())
    .with_metadata(META_INTERACTION_TOKEN, json!(command.token))
    // A command is addressed to the bot by definition.
    .with_metadata(META_MENTIONS_BOT, json!(true));
    with_place(inbound, place)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_command_is_defined() {
        let defined = serde_json::to_value(definitions()).unwrap();
        let names: Vec<&str> = defined.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["status", "stop", "pause", "resume", "new"]);
    }
}
