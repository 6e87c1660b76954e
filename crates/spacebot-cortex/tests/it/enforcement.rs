//! Enforcement: a hung turn restarts its conversation, a hung process ends as `timed_out`, and a
//! watchdog that only audits ends nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use spacebot_agent::{AgentProfile, ChannelEngine, ChannelSettings, REPLY_TOOL};
use spacebot_core::{
    AgentId, ConversationId, ConversationLog, DeliveryPolicy, InboundMessage, Lifecycle, Outbox, ProcessChange,
    ProcessId, ProcessKind, ProcessRecord, Runtime, RuntimeEvent, Sender, TerminalState,
};
use spacebot_cortex::{Finding, Intervention, Watchdog, WatchdogSettings};
use spacebot_testing::{CapturingAdapter, MemoryLog, ScriptedModel, ScriptedTurn};

const AGENT: &str = "main";
const CONV: &str = "test:c1";
const WAIT: Duration = Duration::from_secs(600);

struct Setup {
    runtime: Runtime,
    adapter: Arc<CapturingAdapter>,
    model: Arc<ScriptedModel>,
    log: Arc<MemoryLog>,
    watchdog: Watchdog,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The watchdog holds turns to 30 s and processes to their own limit, with 5 s of grace, while
/// the channel's own turn timeout is an hour: a turn past 35 s has escaped the channel's bound.
async fn setup(enforce: bool) -> Setup {
    let model = Arc::new(ScriptedModel::new());
    let settings = ChannelSettings::default().with_turn_timeout(Duration::from_secs(3600));
    let profile = AgentProfile::new(AGENT).with_model(model.clone()).with_settings(settings);
    let adapter = Arc::new(CapturingAdapter::new("test"));
    let log = Arc::new(MemoryLog::new());
    let runtime = Runtime::builder()
        .engine(Arc::new(ChannelEngine::new([profile])))
        .log(log.clone())
        .adapter(adapter.clone())
        .agent(AGENT)
        .start()
        .await
        .expect("runtime starts");
    let mut limits = WatchdogSettings::default().with_tick(Duration::from_secs(1)).with_grace(Duration::from_secs(5));
    limits.turn_limit = Duration::from_secs(30);
    let mut watchdog = Watchdog::new(limits);
    if enforce {
        watchdog = watchdog.enforce(runtime.handle());
    }
    let stop = CancellationToken::new();
    let task = tokio::spawn(watchdog.clone().run(runtime.handle().subscribe(), stop.clone()));
    Setup { runtime, adapter, model, log, watchdog, stop, task }
}

impl Setup {
    fn say(&self, text: &str) -> InboundMessage {
        let message = InboundMessage::text("test", CONV, Sender::new("alice"), text).with_direct(true);
        self.adapter.inject(message.clone());
        message
    }

    async fn finish(self) {
        self.stop.cancel();
        self.task.await.expect("the watchdog ends");
        self.runtime.shutdown().await;
    }
}

fn reply(text: &str) -> ScriptedTurn {
    ScriptedTurn::tool_call(REPLY_TOOL, json!({ "content": text }))
}

#[tokio::test(start_paused = true)]
async fn a_hung_turn_is_ended_its_message_answered_and_the_conversation_goes_on() {
    let s = setup(true).await;
    s.model.push(ScriptedTurn::hang());
    let stuck = s.say("are you there?");

    tokio::time::sleep(Duration::from_secs(34)).await;
    assert!(s.adapter.texts_for(CONV).is_empty(), "within the limit and grace nothing happens");
    assert!(s.watchdog.interventions().is_empty());

    let texts = s.adapter.wait_for_texts(CONV, 1, WAIT).await;
    assert!(texts[0].contains("Something went wrong"), "{texts:?}");
    assert!(s.adapter.sent().iter().any(|(target, _)| target.id == stuck.id), "the held message got the answer");
    assert!(
        matches!(s.watchdog.interventions().as_slice(), [Intervention::RestartedConversation { agent, conversation, running_for }]
            if agent.as_str() == AGENT && conversation.as_str() == CONV && *running_for > Duration::from_secs(35)),
        "{:?}",
        s.watchdog.interventions()
    );
    assert!(s.watchdog.findings().is_empty(), "what was ended is no longer a finding: {:?}", s.watchdog.findings());

    s.model.push(reply("Here now."));
    s.say("hello?");
    assert_eq!(s.adapter.wait_for_texts(CONV, 2, WAIT).await[1], "Here now.");
    assert!(s.log.unhandled().await.expect("unhandled").is_empty(), "every message answered");
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn a_hung_process_is_ended_as_timed_out_once() {
    let s = setup(true).await;
    let registry = s.runtime.handle().processes().clone();
    // Where the registry announces these processes' ends (a channel's own outbox in the daemon).
    let (bus, mut announced) = broadcast::channel(16);
    let outbox = Outbox::new(Arc::default(), bus, DeliveryPolicy::default());
    let (notify, mut ends) = tokio::sync::mpsc::unbounded_channel();
    let register = |id: &str, limit: u64| {
        let lifecycle = Lifecycle::new();
        let record = ProcessRecord::new(
            AgentId::new(AGENT),
            ConversationId::new(CONV),
            ProcessId::new(id),
            ProcessKind::Worker,
            lifecycle.clone(),
            CancellationToken::new(),
            outbox.clone(),
        )
        .with_limit(Duration::from_secs(limit))
        .with_notify(notify.clone());
        // A body that ignores its cancel token and never finishes: only an abort ends it.
        let task = tokio::spawn(std::future::pending::<()>());
        let registration = registry.register(record);
        registration.set_task(task.abort_handle());
        (lifecycle, task, registration)
    };
    let (hung, hung_task, _hung_registration) = register("hung", 10);
    let (patient, _patient_task, _patient_registration) = register("patient", 600);

    tokio::time::sleep(Duration::from_secs(14)).await;
    assert!(hung.is_running(), "limit 10 s plus 5 s of grace not passed yet");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hung.terminal(), Some(TerminalState::TimedOut));
    assert!(hung_task.await.expect_err("aborted").is_cancelled());
    assert!(patient.is_running(), "a process within its limit is left alone");
    let end = ends.try_recv().expect("the owner is told");
    assert_eq!((end.process.as_str(), end.state), ("hung", TerminalState::TimedOut));
    assert!(end.reason.contains("ended by the cortex") && end.reason.contains("10s limit"), "{}", end.reason);

    let finished: Vec<_> = std::iter::from_fn(|| announced.try_recv().ok())
        .filter_map(|event| match event {
            RuntimeEvent::Process(event) => match event.change {
                ProcessChange::Finished { state, .. } => Some((event.process, state)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(finished, vec![(ProcessId::new("hung"), TerminalState::TimedOut)], "one terminal state, announced once");
    assert!(matches!(s.watchdog.interventions().as_slice(),
        [Intervention::EndedProcess { process, kind: ProcessKind::Worker, .. }] if process.as_str() == "hung"));
    s.finish().await;
}

#[tokio::test(start_paused = true)]
async fn an_auditing_watchdog_reports_a_hung_turn_and_ends_nothing() {
    let s = setup(false).await;
    s.model.push(ScriptedTurn::hang());
    s.say("are you there?");
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(matches!(s.watchdog.findings().as_slice(), [Finding::Turn { .. }]), "{:?}", s.watchdog.findings());
    assert!(s.watchdog.interventions().is_empty());
    assert!(s.adapter.texts_for(CONV).is_empty(), "nothing was ended");
    s.finish().await;
}
