//! A conversation's inbox: the queue between the router and the conversation task.
//!
//! It is a queue of our own rather than an mpsc receiver for one reason: it survives the task
//! that reads it. If a conversation task dies (an engine bug that panics), the messages queued
//! behind the one it was handling are still here, so the runtime can answer the message in
//! progress with a visible error and start a new task on the rest. With a channel receiver moved
//! into the task, they would die with it.
//!
//! The contract for engines: a message is *in progress* from the moment [`Inbox::recv`] returns
//! it until the next call to `recv`, so the runtime always knows which message a dead task was
//! working on. An engine that gathers several messages before answering them (coalescing a
//! burst) says so with [`Inbox::set_holding`]: while it holds, each message received joins those
//! in progress instead of replacing them, and a dead task's whole burst is answered.
//!
//! Control commands (`/stop`, `/status`, ...) travel in a lane of their own: `recv` returns them
//! before any queued message, and [`Inbox::recv_control`] returns only them, so an engine can
//! act on one while a turn is still running.
//!
//! An eviction request ([`ConversationInput::Evict`]) is a flag, not a queue entry: `recv`
//! returns it only when nothing else is waiting, asking it again changes nothing, and a message
//! sent after it (or a new reader) withdraws it. So it never overtakes a message, and a
//! conversation that was busy when asked is not evicted the moment it answers what came next.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::engine::ConversationInput;
use crate::message::InboundMessage;

#[derive(Default)]
struct State {
    queue: VecDeque<ConversationInput>,
    control: VecDeque<ConversationInput>,
    in_progress: Vec<InboundMessage>,
    holding: bool,
    closed: bool,
    /// The runtime asked the reader to end if it is idle; see the module documentation.
    evict: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Notify,
    control_ready: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is only held for queue operations that cannot panic; recover the data anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receiving side of a conversation's queue, handed to [`ConversationEngine`]s.
///
/// [`ConversationEngine`]: crate::ConversationEngine
pub struct Inbox {
    shared: Arc<Shared>,
}

/// The router's side of an inbox. Sending never waits.
pub(crate) struct InboxSender {
    shared: Arc<Shared>,
}

/// A new, empty inbox and its sender.
pub(crate) fn inbox() -> (InboxSender, Inbox) {
    let shared = Arc::new(Shared::default());
    (InboxSender { shared: shared.clone() }, Inbox { shared })
}

impl Inbox {
    /// The next input, waiting for one; `None` once the runtime closed the inbox and it is empty.
    ///
    /// Calling `recv` also says the previous message is finished.
    pub async fn recv(&mut self) -> Option<ConversationInput> {
        loop {
            let notified = self.shared.ready.notified();
            {
                let mut state = self.shared.lock();
                if !state.holding {
                    state.in_progress.clear();
                }
                if let Some(input) = state.control.pop_front() {
                    return Some(input);
                }
                if let Some(input) = state.queue.pop_front() {
                    if let ConversationInput::Message(message) = &input {
                        state.in_progress.push(message.clone());
                    }
                    return Some(input);
                }
                if state.closed {
                    return None;
                }
                if std::mem::take(&mut state.evict) {
                    return Some(ConversationInput::Evict);
                }
            }
            notified.await;
        }
    }

    /// The next control command, waiting for one; never returns while none arrives (select it
    /// against the work it may interrupt). Does not change which message is in progress.
    ///
    /// Cancel-safe: a command is only taken when this returns.
    pub async fn recv_control(&self) -> ConversationInput {
        loop {
            let notified = self.shared.control_ready.notified();
            if let Some(input) = self.shared.lock().control.pop_front() {
                return input;
            }
            notified.await;
        }
    }

    /// Whether the messages received so far stay in progress when the next one is received
    /// (while gathering a burst to answer in one turn). Turning it off leaves them in progress
    /// until the next [`recv`](Self::recv).
    pub fn set_holding(&self, holding: bool) {
        self.shared.lock().holding = holding;
    }

    /// How many inputs are waiting.
    pub fn len(&self) -> usize {
        let state = self.shared.lock();
        state.queue.len() + state.control.len()
    }

    /// Whether no input is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl InboxSender {
    /// Queues an input and wakes the reader. Control inputs go to the control lane.
    pub(crate) fn send(&self, input: ConversationInput) {
        let control = matches!(input, ConversationInput::Control(..));
        {
            let mut state = self.shared.lock();
            // Whatever asked the reader to leave was decided before this message existed.
            state.evict = false;
            if control {
                state.control.push_back(input);
            } else {
                state.queue.push_back(input);
            }
        }
        self.shared.ready.notify_one();
        if control {
            self.shared.control_ready.notify_one();
        }
    }

    /// Asks the reader to end if it is idle: its next `recv` with nothing queued returns
    /// [`ConversationInput::Evict`]. Withdrawn by the next [`send`](Self::send).
    pub(crate) fn request_eviction(&self) {
        self.shared.lock().evict = true;
        self.shared.ready.notify_one();
    }

    /// Closes the inbox: the reader drains what is queued, then `recv` returns `None`.
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }

    /// A new reader on the same queue, for a replacement task; takes the messages the previous
    /// reader had in progress (one, or a burst it was holding), oldest first.
    pub(crate) fn reopen(&self) -> (Inbox, Vec<InboundMessage>) {
        let in_progress = {
            let mut state = self.shared.lock();
            state.holding = false;
            // A request made of the previous reader is not the new one's.
            state.evict = false;
            std::mem::take(&mut state.in_progress)
        };
        (Inbox { shared: self.shared.clone() }, in_progress)
    }

    /// Takes everything queued (for answering when no task can run).
    pub(crate) fn drain(&self) -> Vec<ConversationInput> {
        let mut state = self.shared.lock();
        let control: Vec<_> = state.control.drain(..).collect();
        control.into_iter().chain(state.queue.drain(..)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Sender;

    fn message(text: &str) -> ConversationInput {
        ConversationInput::Message(InboundMessage::text("t", "c", Sender::new("u"), text))
    }

    fn text(input: Option<ConversationInput>) -> String {
        match input {
            Some(ConversationInput::Evict) => "<evict>".to_owned(),
            Some(input) => input.message().map(|m| m.content.text()).unwrap_or_default(),
            None => "<closed>".to_owned(),
        }
    }

    fn texts(messages: &[InboundMessage]) -> Vec<String> {
        messages.iter().map(|m| m.content.text()).collect()
    }

    fn control(text: &str) -> ConversationInput {
        let message = InboundMessage::text("t", "c", Sender::new("u"), text);
        ConversationInput::Control(crate::engine::ControlCommand::parse(&message).unwrap(), message)
    }

    #[tokio::test]
    async fn control_commands_jump_the_queue_and_have_their_own_lane() {
        let (sender, mut inbox) = inbox();
        sender.send(message("a"));
        sender.send(control("/status"));
        sender.send(control("/stop"));
        // The control lane only yields commands.
        assert_eq!(text(Some(inbox.recv_control().await)), "/status");
        // `recv` yields the remaining command before the queued message.
        assert_eq!(text(inbox.recv().await), "/stop");
        assert_eq!(text(inbox.recv().await), "a");
        let (_, in_progress) = sender.reopen();
        assert_eq!(texts(&in_progress), ["a"], "commands are never in progress");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), inbox.recv_control()).await;
        assert!(waiting.is_err(), "no command is queued");
    }

    #[tokio::test]
    async fn delivers_in_order_then_closes() {
        let (sender, mut inbox) = inbox();
        sender.send(message("a"));
        sender.send(message("b"));
        sender.close();
        assert_eq!(text(inbox.recv().await), "a");
        assert_eq!(text(inbox.recv().await), "b");
        assert_eq!(text(inbox.recv().await), "<closed>");
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken() {
        let (sender, mut inbox) = inbox();
        let reader = tokio::spawn(async move { text(inbox.recv().await) });
        tokio::task::yield_now().await;
        sender.send(message("late"));
        assert_eq!(reader.await.unwrap(), "late");
    }

    #[tokio::test]
    async fn the_queue_and_the_message_in_progress_outlive_a_dead_reader() {
        let (sender, mut inbox) = inbox();
        sender.send(message("boom"));
        sender.send(message("queued"));
        let reader = tokio::spawn(async move {
            let _ = inbox.recv().await;
            panic!("engine bug");
        });
        assert!(reader.await.unwrap_err().is_panic());
        let (mut inbox, in_progress) = sender.reopen();
        assert_eq!(texts(&in_progress), ["boom"]);
        assert_eq!(text(inbox.recv().await), "queued");
        // Finished messages are not reported again.
        let (_, in_progress) = sender.reopen();
        assert_eq!(texts(&in_progress), ["queued"], "`queued` is in progress until the next recv");
        let (_, in_progress) = sender.reopen();
        assert!(in_progress.is_empty());
    }

    #[tokio::test]
    async fn an_eviction_request_never_overtakes_a_message_and_a_later_message_withdraws_it() {
        let (sender, mut inbox) = inbox();
        sender.send(message("a"));
        sender.request_eviction();
        sender.request_eviction();
        assert_eq!(inbox.len(), 1, "a request is not a queued input");
        assert_eq!(text(inbox.recv().await), "a", "what was queued first comes first");
        assert_eq!(text(inbox.recv().await), "<evict>", "asked twice, delivered once");
        let (_, in_progress) = sender.reopen();
        assert!(in_progress.is_empty(), "taking the request finishes the previous message");

        sender.request_eviction();
        sender.send(message("b"));
        assert_eq!(text(inbox.recv().await), "b");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), inbox.recv()).await;
        assert!(waiting.is_err(), "the message withdrew the request");

        sender.request_eviction();
        let (mut fresh, _) = sender.reopen();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(10), fresh.recv()).await;
        assert!(waiting.is_err(), "a new reader does not inherit the request");
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken_by_an_eviction_request() {
        let (sender, mut inbox) = inbox();
        let reader = tokio::spawn(async move { text(inbox.recv().await) });
        tokio::task::yield_now().await;
        sender.request_eviction();
        assert_eq!(reader.await.unwrap(), "<evict>");
    }

    #[tokio::test]
    async fn a_held_burst_stays_in_progress_until_released_and_the_next_recv() {
        let (sender, mut inbox) = inbox();
        for text in ["one", "two", "three"] {
            sender.send(message(text));
        }
        sender.send(control("/status"));
        inbox.set_holding(true);
        assert_eq!(text(inbox.recv().await), "/status");
        assert_eq!(text(inbox.recv().await), "one");
        assert_eq!(text(inbox.recv().await), "two");
        inbox.set_holding(false);
        // Released: still in progress (its turn runs now) until the next recv.
        let (mut inbox, in_progress) = sender.reopen();
        assert_eq!(texts(&in_progress), ["one", "two"], "the whole burst, oldest first");
        assert_eq!(text(inbox.recv().await), "three");
        let (_, in_progress) = sender.reopen();
        assert_eq!(texts(&in_progress), ["three"]);
    }
}
