//! The Discord adapter for Spacebot: a [`MessagingAdapter`](spacebot_core::MessagingAdapter) over
//! serenity.
//!
//! [`DiscordAdapter`] connects to the gateway and turns guild messages, thread messages, direct
//! messages and the control slash commands (`/status`, `/stop`, `/pause`, `/resume`, `/new`) into
//! [`InboundMessage`](spacebot_core::InboundMessage)s; it sends replies split at Discord's 2000
//! character limit (never inside a word or a code block), thread replies, reactions and a typing
//! indicator. Allow-lists of guilds, channels and DM users decide what it hands in.
//!
//! Conversation ids keep places apart: `discord:{guild}:{channel}` (a thread is a channel of its
//! own, so a conversation of its own), `discord:dm:{user}`; a named instance uses its runtime key
//! instead of `discord` (`discord:ops:{guild}:{channel}`).
//!
//! Like every adapter it depends on `spacebot-core` alone. [`DiscordSettings::with_api_url`]
//! points it at a local fake of Discord (`spacebot-testing`'s `FakeDiscord`).

mod adapter;
mod commands;
mod error;
mod images;
mod inbound;
mod order;
mod settings;

pub use adapter::DiscordAdapter;
pub use commands::CONTROL_COMMANDS;
pub use error::classify;
pub use settings::DiscordSettings;

#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    //! The gateway payload mapping, reachable by the fuzz targets in `fuzz/` (feature `fuzzing`)
    //! without making the mapping part of the crate's API.

    use serenity::model::application::Interaction;
    use serenity::model::channel::Message;
    use serenity::model::event::{Event, GatewayEvent};

    use spacebot_core::InboundMessage;

    use crate::inbound::{Place, admitted};
    use crate::settings::DiscordSettings;

    /// Reads `payload` as the gateway would deliver it (a `MESSAGE_CREATE` or
    /// `INTERACTION_CREATE` dispatch, or a bare message object) and maps it as the adapter does,
    /// with `parent` as the channel's parent; `None` when it is no such payload or is filtered
    /// out.
    pub fn map_payload(
        settings: &DiscordSettings,
        bot_user: u64,
        parent: Option<u64>,
        payload: &[u8],
    ) -> Option<InboundMessage> {
        if let Some(GatewayEvent::Dispatch(_, event)) = parsed(|| serde_json::from_slice::<GatewayEvent>(payload).ok())
        {
            return match event {
                Event::MessageCreate(created) => {
                    crate::inbound::map_message(settings, bot_user, &created.message, parent)
                }
                Event::InteractionCreate(created) => {
                    let Interaction::Command(command) = created.interaction else { return None };
                    let guild = command.guild_id.map(|g| g.get());
                    let place = Place { guild, channel: command.channel_id.get(), parent: guild.and(parent) };
                    admitted(settings, place, command.user.id.get())
                        .then(|| crate::commands::map_command(settings, &command, place))
                }
                _ => None,
            };
        }
        let message: Message = parsed(|| serde_json::from_slice(payload).ok())?;
        crate::inbound::map_message(settings, bot_user, &message, parent)
    }

    /// What `read` reads (serenity's deserializing of the payload), or `None` when it can't, also
    /// when serenity's own deserializer panics: serenity 0.12.5's `ImageHash::from_str` cuts a hash
    /// (a user's `avatar`, say) at byte 10 and panics when that falls inside a non-ASCII character
    /// (found by the `discord` fuzz target; `docs/security.md`). On the gateway that parse is
    /// serenity's, in its shard task, and Discord sends hashes in hex; here it is caught so the
    /// target goes on fuzzing the mapping. The panic hook (libFuzzer's aborts) is silenced for
    /// the parse only.
    fn parsed<T>(read: impl FnOnce() -> Option<T> + std::panic::UnwindSafe) -> Option<T> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = std::panic::catch_unwind(read);
        std::panic::set_hook(hook);
        result.ok().flatten()
    }
}

/// Discord's limit on the characters of one message.
pub const MESSAGE_LIMIT: usize = 2000;
