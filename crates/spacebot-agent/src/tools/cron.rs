//! The channel's `cron` tool: create, list and delete the scheduled jobs of this conversation,
//! through the agent's [`CronJobs`] service. Offered only to agents that have one.
//!
//! A job created here delivers to this conversation. Creating and deleting are control commands:
//! when the agent has `admins`, only they may (the model is told to say so to anyone else).

use serde::Deserialize;
use serde_json::json;

use spacebot_core::{
    AgentId, CHANNEL_KEY, ConversationId, CronJob, CronJobSpec, CronJobs, DurationText, InboundMessage, ToolSpec,
};

/// The tool that manages this conversation's scheduled jobs.
pub const CRON_TOOL: &str = "cron";

/// The adapter of the conversations cron runs happen in (`spacebot-cortex`'s `CRON_ADAPTER`).
const CRON_RUN_ADAPTER: &str = "cron";

pub(crate) fn cron_tool_spec() -> ToolSpec {
    ToolSpec::new(
        CRON_TOOL,
        "Manage scheduled jobs that run a prompt on a schedule and post the answer in this \
         conversation: `create` (with `id`, `prompt` and `cron` or `every`), `list`, or `delete` (by `id`).",
        json!({
            "type": "object",
            "properties": {
                "action": { "type": "string", "enum": ["create", "list", "delete"] },
                "id": { "type": "string", "description": "The job's name: letters, digits, '-', '_'." },
                "prompt": { "type": "string", "description": "What to do at each run, self-contained." },
                "cron": { "type": "string", "description": "A cron expression, like \"0 9 * * 1-5\"." },
                "every": { "type": "string", "description": "Or an interval, like \"30m\" or \"2h\"." },
                "timezone": { "type": "string", "description": "IANA time zone of `cron`, like \"Europe/Berlin\"." },
                "active_hours": {
                    "type": "array", "items": { "type": "integer" },
                    "description": "[start, end): only run between these local hours."
                },
                "run_once": { "type": "boolean", "description": "Run once, at the first due time." }
            },
            "required": ["action"]
        }),
    )
}

/// The arguments of a `cron` call.
#[derive(Debug, Deserialize)]
pub(crate) struct CronArgs {
    action: String,
    id: Option<String>,
    prompt: Option<String>,
    cron: Option<String>,
    every: Option<DurationText>,
    timezone: Option<String>,
    active_hours: Option<[u8; 2]>,
    #[serde(default)]
    run_once: bool,
}

/// Where this conversation's jobs deliver: the adapter and the platform channel the message names,
/// else the conversation itself when its id is `adapter:target` (`webhook:c1`).
fn deliver_to(target: &InboundMessage) -> String {
    match target.metadata.get(CHANNEL_KEY).and_then(|v| v.as_str()) {
        Some(channel) => format!("{}:{channel}", target.adapter),
        None => target.conversation.to_string(),
    }
}

/// Runs a `cron` call for `conversation`, answered in the context of `target`; `may_change`
/// says whether its sender may create and delete jobs. Returns what the model sees.
pub(crate) async fn run_cron_tool(
    service: &dyn CronJobs,
    agent: &AgentId,
    conversation: &ConversationId,
    target: &InboundMessage,
    may_change: bool,
    args: CronArgs,
) -> String {
    let mine = |job: &CronJob| job.conversation.as_ref() == Some(conversation);
    match args.action.as_str() {
        "list" => match service.list(agent).await {
            Ok(jobs) => {
                let lines: Vec<String> = jobs.iter().filter(|job| mine(job)).map(describe).collect();
                if lines.is_empty() { "No scheduled jobs in this conversation.".to_owned() } else { lines.join("\n") }
            }
            Err(error) => format!("error: {error}"),
        },
        "create" | "delete" if !may_change => "Refused: only the agent's admins may create or delete scheduled jobs \
                                               here. Tell the person so."
            .to_owned(),
        "create" if target.adapter == CRON_RUN_ADAPTER => "A scheduled run can't create scheduled jobs.".to_owned(),
        "create" => {
            let (Some(id), Some(prompt)) = (args.id, args.prompt) else {
                return "`create` needs an `id` and a `prompt`.".to_owned();
            };
            let mut spec = CronJobSpec::new(id, prompt, deliver_to(target));
            spec.cron = args.cron;
            spec.every = args.every;
            spec.timezone = args.timezone;
            spec.active_hours = args.active_hours;
            spec.run_once = args.run_once;
            let job = match spec.into_job(agent.clone()) {
                Ok(job) => job.with_conversation(conversation.clone()).with_source("conversation"),
                Err(error) => return format!("error: {error}"),
            };
            match service.list(agent).await {
                Ok(jobs) if jobs.iter().any(|j| j.id == job.id && !mine(j)) => {
                    return format!("error: the id `{}` is taken by another conversation's job; pick another.", job.id);
                }
                _ => {}
            }
            match service.create(job).await {
                Ok(job) => format!("Created: {}", describe(&job)),
                Err(error) => format!("error: {error}"),
            }
        }
        "delete" => {
            let Some(id) = args.id else { return "`delete` needs the job's `id`.".to_owned() };
            match service.list(agent).await {
                Ok(jobs) if jobs.iter().any(|job| job.id == id && mine(job)) => {}
                Ok(_) => return format!("There is no scheduled job `{id}` in this conversation."),
                Err(error) => return format!("error: {error}"),
            }
            match service.delete(agent, &id).await {
                Ok(true) => format!("Deleted `{id}`."),
                Ok(false) => format!("There is no scheduled job `{id}` in this conversation."),
                Err(error) => format!("error: {error}"),
            }
        }
        other => format!("`{other}` is not an action of `cron`: use `create`, `list` or `delete`."),
    }
}

/// One line about a job for the model.
fn describe(job: &CronJob) -> String {
    let when = match (&job.cron, job.every) {
        (Some(cron), _) => {
            format!("cron `{cron}`{}", job.timezone.as_ref().map(|tz| format!(" ({tz})")).unwrap_or_default())
        }
        (None, Some(every)) => format!("every {} s", every.as_secs()),
        (None, None) => "no schedule".to_owned(),
    };
    let state = if job.enabled { "enabled" } else { "disabled" };
    let once = if job.run_once { ", once" } else { "" };
    format!("`{}`: {when}{once}, {state}: {}", job.id, job.prompt)
}
