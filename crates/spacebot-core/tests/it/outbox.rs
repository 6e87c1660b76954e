//! The outbox: retries of transient delivery failures with backoff, no retries of permanent
//! ones or of typing indicators, and the events it publishes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use spacebot_core::{
    AdapterErrorKind, AdapterSet, DeliveryPolicy, InboundMessage, MessagingAdapter, OutboundResponse, Outbox,
    RuntimeEvent, StatusUpdate,
};

use crate::support::{FakeAdapter, Parts, SendScript, message};

fn policy(attempts: u32) -> DeliveryPolicy {
    let mut policy = DeliveryPolicy::default();
    policy.attempts = attempts;
    policy.initial_backoff = Duration::from_millis(250);
    policy.attempt_timeout = Duration::from_secs(5);
    policy
}

struct Setup {
    adapter: Arc<FakeAdapter>,
    outbox: Outbox,
    events: broadcast::Receiver<RuntimeEvent>,
}

fn setup(policy: DeliveryPolicy) -> Setup {
    let adapter = FakeAdapter::new("chat");
    let (sender, events) = broadcast::channel(64);
    let set = AdapterSet::new(vec![adapter.clone() as Arc<dyn MessagingAdapter>]);
    let outbox = Outbox::new(Arc::new(set), sender, policy);
    Setup { adapter, outbox, events }
}

fn target() -> InboundMessage {
    message("chat:c1", "hello").with_agent("main")
}

fn events(receiver: &mut broadcast::Receiver<RuntimeEvent>) -> Vec<RuntimeEvent> {
    std::iter::from_fn(|| receiver.try_recv().ok()).collect()
}

fn offsets(times: &[Instant]) -> Vec<Duration> {
    times.iter().map(|t| t.duration_since(times[0])).collect()
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_retried_with_doubling_backoff_until_it_succeeds() {
    let mut setup = setup(policy(3));
    setup.adapter.script_sends([SendScript::Fail(AdapterErrorKind::Transient); 2]);

    setup.outbox.send(&target(), OutboundResponse::text("hi")).await.unwrap();

    let attempts = setup.adapter.attempts();
    assert_eq!(attempts.len(), 3);
    assert!(attempts[2].delivered);
    let times: Vec<_> = attempts.iter().map(|a| a.at).collect();
    assert_eq!(offsets(&times), [Duration::ZERO, Duration::from_millis(250), Duration::from_millis(750)]);
    let events = events(&mut setup.events);
    assert_eq!(events.len(), 1, "one event per response, not per attempt: {events:?}");
    assert!(matches!(
        &events[0],
        RuntimeEvent::ResponseSent { agent, conversation, adapter, response }
            if agent.as_str() == "main" && conversation.as_str() == "chat:c1" && adapter == "chat"
                && response == &OutboundResponse::text("hi")
    ));
}

#[tokio::test(start_paused = true)]
async fn transient_failures_give_up_after_the_last_attempt() {
    let mut setup = setup(policy(3));
    setup.adapter.script_sends([SendScript::Fail(AdapterErrorKind::Transient); 5]);

    let error = setup.outbox.send(&target(), OutboundResponse::text("hi")).await.unwrap_err();

    assert!(error.is_transient());
    assert_eq!(setup.adapter.attempts().len(), 3);
    let events = events(&mut setup.events);
    assert!(matches!(&events[..], [RuntimeEvent::DeliveryFailed { adapter, .. }] if adapter == "chat"), "{events:?}");
}

#[tokio::test(start_paused = true)]
async fn permanent_and_unsupported_failures_are_not_retried() {
    for kind in [AdapterErrorKind::Permanent, AdapterErrorKind::Unsupported] {
        let mut setup = setup(policy(5));
        setup.adapter.script_sends([SendScript::Fail(kind)]);
        let started = Instant::now();

        let error = setup.outbox.send(&target(), OutboundResponse::text("hi")).await.unwrap_err();

        assert_eq!(error.kind(), kind);
        assert_eq!(setup.adapter.attempts().len(), 1, "{kind:?} was retried");
        assert_eq!(started.elapsed(), Duration::ZERO, "{kind:?} waited for a backoff");
        let events = events(&mut setup.events);
        assert!(
            matches!(&events[..], [RuntimeEvent::DeliveryFailed { agent, error, .. }]
                if agent.as_str() == "main" && error.contains("injected")),
            "{events:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn typing_indicators_get_one_attempt() {
    for status in [StatusUpdate::Typing, StatusUpdate::StopTyping] {
        let setup = setup(policy(5));
        setup.adapter.script_sends([SendScript::Fail(AdapterErrorKind::Transient)]);

        let result = setup.outbox.send(&target(), OutboundResponse::Status { status: status.clone() }).await;

        assert!(result.unwrap_err().is_transient());
        assert_eq!(setup.adapter.attempts().len(), 1, "{status:?} was retried");
    }
}

#[tokio::test(start_paused = true)]
async fn a_send_that_hangs_times_out_and_is_retried() {
    let mut policy = policy(2);
    policy.attempt_timeout = Duration::from_secs(3);
    let setup = setup(policy);
    setup.adapter.script_sends([SendScript::Hang]);
    let started = Instant::now();

    setup.outbox.send(&target(), OutboundResponse::text("hi")).await.unwrap();

    let attempts = setup.adapter.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].at.duration_since(started), Duration::from_millis(3250));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_adapter_is_a_permanent_failure() {
    let mut setup = setup(policy(3));
    let target = target().with_adapter("nowhere");

    let error = setup.outbox.send(&target, OutboundResponse::text("hi")).await.unwrap_err();

    assert_eq!(error.kind(), AdapterErrorKind::Permanent);
    assert_eq!(error.adapter(), "nowhere");
    assert!(setup.adapter.attempts().is_empty());
    let events = events(&mut setup.events);
    assert!(
        matches!(&events[..], [RuntimeEvent::DeliveryFailed { adapter, .. }] if adapter == "nowhere"),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_runtime_outbox_retries_and_reports_to_subscribers() {
    let parts = Parts::new();
    parts.adapter.script_sends([SendScript::Fail(AdapterErrorKind::Transient)]);
    let runtime = parts.start().await;
    let mut subscriber = runtime.handle().subscribe();

    runtime.handle().submit(message("chat:c1", "hello")).await.unwrap();
    parts.adapter.until_delivered("echo: hello").await;
    parts.adapter.script_sends([SendScript::Fail(AdapterErrorKind::Permanent)]);
    runtime.handle().submit(message("chat:c1", "again")).await.unwrap();
    parts.engine.until_seen(2).await;
    parts.log.until_handled(&parts.engine.seen_text("again").id).await;

    let delivery: Vec<_> = events(&mut subscriber)
        .into_iter()
        .filter_map(|event| match event {
            RuntimeEvent::ResponseSent { response, .. } => Some(format!("sent {}", response.text_content().unwrap())),
            RuntimeEvent::DeliveryFailed { .. } => Some("failed".to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(delivery, ["sent echo: hello", "failed"]);
    assert_eq!(parts.adapter.attempts().len(), 3, "one retry of the transient failure, none of the permanent one");
    runtime.shutdown().await;
}
