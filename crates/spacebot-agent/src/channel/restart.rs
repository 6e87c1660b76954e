//! What a channel picks up from before a restart: the background results its conversation is
//! still owed, and the work a replayed turn already started.
//!
//! A branch or worker that ends records with its end what its conversation is owed (its result,
//! or a notice when a shutdown stopped it: see `on_exit`), and the channel marks it told once the
//! relay turn carrying it is over. So a result that ended before a crash or a stop, but was never
//! relayed, is still owed when the next run starts: the runtime wakes its conversation, which
//! queues it here for a relay turn ([`Channel::resume_owed`]), once. The told mark is written
//! after the relay turn, so a crash in between relays it again rather than never.
//!
//! A message a crash left unanswered is answered again at the next start, and the model, seeing
//! the same message, may ask for the same branch or worker again. The runs recorded for that
//! message are looked up first ([`Channel::earlier_run`]): a run its first turn started is not
//! started a second time; the tool result says what became of it instead.

use std::collections::HashSet;

use spacebot_core::{MessageId, Owed, ProcessKind, RecordedRun, TerminalState};

use crate::processes::{Completion, one_line};

use super::turn::{TurnInput, TurnKind};
use super::{Channel, FINAL_SEQUENCE};

/// Longest result text quoted to the model about an earlier run.
const EARLIER_RESULT_CHARS: usize = 1000;

/// The notice a conversation gets after a restart for a worker or branch a shutdown stopped.
pub(super) fn stopped_notice(kind: ProcessKind, description: &str) -> String {
    let what = match kind {
        ProcessKind::Branch => "Some background thinking",
        _ => "A background task",
    };
    format!(
        "⚠️ {what} was stopped by a shutdown before it finished: \u{201c}{description}\u{201d}. Ask again if you still need it."
    )
}

impl Channel {
    /// Notes that the conversation was told a process's final result; written by
    /// [`flush_told`](Self::flush_told).
    pub(super) fn told(&mut self, completion: &Completion) {
        if completion.state.is_some() && !self.told_ids.contains(&completion.id) {
            self.told_ids.push(completion.id.clone());
        }
    }

    /// Drops the results waiting for a relay (`/stop`, `/new`): the person asked for that, so
    /// they are not owed after a restart either.
    pub(super) fn forget_pending(&mut self) {
        let dropped: Vec<Completion> = self.pending.drain(..).collect();
        for completion in &dropped {
            self.told(completion);
        }
    }

    /// Records the told marks noted since the last call.
    pub(super) async fn flush_told(&mut self) {
        if self.told_ids.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.told_ids);
        let Some(runs) = &self.runs else { return };
        if let Err(error) = runs.told(&ids).await {
            // The results are relayed once more after the next restart; nothing is lost.
            tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                "can't record that background results were relayed");
        }
    }

    /// Queues for a relay turn the results this conversation's processes recorded before a stop
    /// or crash and never relayed.
    pub(super) async fn resume_owed(&mut self) {
        let Some(runs) = self.runs.clone() else { return };
        let owed = match runs.owed_in(&self.ctx.agent, &self.ctx.conversation).await {
            Ok(owed) => owed,
            Err(error) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't read the background results left untold; they wait for the next start");
                return;
            }
        };
        for recorded in owed {
            let (Some(Owed::Result(result)), Some(state)) = (recorded.owed, recorded.state) else { continue };
            let Some(origin) = recorded.run.origin else {
                // Nowhere to relay it: nobody asked for it through a message.
                self.told_ids.push(recorded.run.process);
                continue;
            };
            tracing::info!(agent = %self.ctx.agent, conversation = %self.ctx.conversation,
                process = %recorded.run.process, "relaying a background result left untold by the last run");
            self.queue_completion(Completion {
                id: recorded.run.process,
                kind: recorded.run.kind,
                state: Some(state),
                success: state.is_success(),
                result,
                origin: std::sync::Arc::new(origin),
                sequence: FINAL_SEQUENCE,
            });
        }
        self.flush_told().await;
    }

    /// For a branch or worker the model asks for in a turn answering a message a previous run
    /// already started one for (the turn is a replay after a crash): what the tool answers
    /// instead of starting it again. `None` starts it.
    pub(super) async fn earlier_run(&mut self, input: &TurnInput, kind: ProcessKind, task: &str) -> Option<String> {
        if input.kind != TurnKind::User {
            return None;
        }
        let replayed: Vec<MessageId> =
            input.answers.iter().filter(|id| self.replayable.contains(*id)).cloned().collect();
        if replayed.is_empty() {
            return None;
        }
        let runs = self.runs.clone()?;
        let recorded = match runs.started_for(&self.ctx.agent, &replayed).await {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, %error,
                    "can't read the work a replayed turn started before; starting it");
                return None;
            }
        };
        let candidates: Vec<RecordedRun> = recorded
            .into_iter()
            .filter(|r| r.run.kind == kind && !self.turn_claimed.contains(&r.run.process))
            .filter(|r| !self.procs.entries.contains_key(&r.run.process))
            .collect();
        let wanted = normalize(task);
        let chosen =
            candidates.iter().find(|r| normalize(&r.run.description) == wanted).or_else(|| candidates.first())?.clone();
        self.turn_claimed.insert(chosen.run.process.clone());
        tracing::info!(agent = %self.ctx.agent, conversation = %self.ctx.conversation, process = %chosen.run.process,
            "a replayed turn asked for work its first run started; not starting it again");
        Some(describe_earlier(&chosen))
    }

    /// Forgets which messages may be replays once they are answered.
    pub(super) fn answered(&mut self, answers: &[MessageId]) {
        for id in answers {
            self.replayable.remove(id);
        }
    }

    /// The messages that were unanswered when this channel started: a turn answering one of
    /// them may be a replay of a turn a crash cut short.
    pub(super) fn set_replayable(&mut self, ids: &HashSet<MessageId>) {
        self.replayable = ids.clone();
    }
}

/// What the tool tells the model about a run an earlier turn for the same message started.
fn describe_earlier(recorded: &RecordedRun) -> String {
    let run = &recorded.run;
    let result = recorded.result.as_deref().map(|text| one_line(text, EARLIER_RESULT_CHARS));
    let fate = match (recorded.state, &recorded.owed, result) {
        (Some(TerminalState::Done), Some(Owed::Result(_)), _) => {
            "It finished; its result will arrive as a background result.".to_owned()
        }
        (Some(TerminalState::Done), _, Some(result)) => {
            format!("It finished, and its result was relayed already: {result}")
        }
        (Some(TerminalState::Done), _, None) => "It finished.".to_owned(),
        (Some(_), Some(Owed::Result(_)), _) => {
            "It ended without success; that will arrive as a background result.".to_owned()
        }
        (Some(TerminalState::Cancelled), Some(Owed::Notice(_)) | None, None) => {
            "A shutdown stopped it before it finished, and the user was told so and can ask again.".to_owned()
        }
        (Some(state), _, Some(result)) => format!("It ended ({}): {result}", state.as_str()),
        (Some(_), _, None) | (None, _, _) => {
            "The restart interrupted it before it finished, and the user is told so and can ask again.".to_owned()
        }
    };
    format!(
        "Not started again: this message was being answered before a restart, and that turn already started \
         {} {} for \u{201c}{}\u{201d}. {fate} Don't start it again unless the user asks for it again.",
        run.kind,
        run.process,
        one_line(&run.description, 200),
    )
}

/// A task compared without case and extra spaces.
fn normalize(task: &str) -> String {
    task.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stopped_notice_names_the_task() {
        let text = stopped_notice(ProcessKind::Worker, "index the archive");
        assert!(text.contains("stopped by a shutdown") && text.contains("index the archive"), "{text}");
    }
}
