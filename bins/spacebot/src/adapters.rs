//! The platform adapters the config asks for, built from `[messaging.*]`.
//!
//! Building never fails the daemon: an adapter that can't even be built is reported and left out,
//! and one that fails to start is retried by the runtime with backoff, so one bad token never
//! stops the other platforms.

use std::sync::Arc;

use spacebot_core::MessagingAdapter;
use spacebot_discord::DiscordAdapter;
use spacebot_email::EmailAdapter;
use spacebot_slack::SlackAdapter;
use spacebot_telegram::TelegramAdapter;

use crate::config::Messaging;

/// One configured connection: its runtime key and the adapter, or why it could not be built.
pub(crate) struct Built {
    pub(crate) name: String,
    pub(crate) adapter: Result<Arc<dyn MessagingAdapter>, String>,
}

/// Builds every configured Discord, Slack, Telegram and email connection.
pub(crate) fn build(messaging: &Messaging) -> Vec<Built> {
    let discord = messaging.discord.iter().map(|settings| Built {
        name: settings.name.clone(),
        adapter: Ok(Arc::new(DiscordAdapter::new(settings.clone())) as Arc<dyn MessagingAdapter>),
    });
    let slack = messaging.slack.iter().map(|settings| Built {
        name: settings.name.clone(),
        adapter: Ok(Arc::new(SlackAdapter::new(settings.clone())) as Arc<dyn MessagingAdapter>),
    });
    let telegram = messaging.telegram.iter().map(|settings| Built {
        name: settings.name.clone(),
        adapter: TelegramAdapter::new(settings.clone())
            .map(|adapter| Arc::new(adapter) as Arc<dyn MessagingAdapter>)
            .map_err(|error| error.to_string()),
    });
    let email = messaging.email.iter().map(|settings| Built {
        name: settings.name.clone(),
        adapter: EmailAdapter::new(settings.clone())
            .map(|adapter| Arc::new(adapter) as Arc<dyn MessagingAdapter>)
            .map_err(|error| error.to_string()),
    });
    discord.chain(slack).chain(telegram).chain(email).collect()
}
