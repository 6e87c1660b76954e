//! `RuntimeHandle::submit`, the builder, recovery at start, and `status`.

use spacebot_core::{AgentId, Error, MessageId, Runtime, RuntimeEvent};

use crate::support::{EchoEngine, MemoryLog, Parts, message};

#[tokio::test(start_paused = true)]
async fn submit_records_the_message_before_routing_it_and_returns_its_id() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    let id = handle.submit(message("chat:c1", "hello").with_id("m1")).await.unwrap();

    assert_eq!(id, MessageId::new("m1"));
    let recorded = parts.log.inbound();
    assert_eq!(recorded.len(), 1, "submit returns once the message is in the log");
    assert_eq!(recorded[0].id, id);
    assert_eq!(recorded[0].agent, Some(AgentId::new("main")), "the log gets the resolved agent");

    parts.engine.until_seen(1).await;
    let seen = parts.engine.seen_text("hello");
    assert_eq!(seen.id, id);
    assert!(seen.in_log, "the engine received a message the log did not hold yet");

    parts.adapter.until_delivered("echo: hello").await;
    parts.log.until_handled(&id).await;
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_duplicate_message_id_is_processed_once() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let handle = runtime.handle();

    let first = handle.submit(message("chat:c1", "hello").with_id("m1")).await.unwrap();
    let again = handle.submit(message("chat:c1", "hello, redelivered").with_id("m1")).await.unwrap();
    assert_eq!(first, again, "a redelivered message reports the id it was recorded under");
    // A later message of the same conversation is a barrier: anything routed before it is seen
    // before it.
    handle.submit(message("chat:c1", "next").with_id("m2")).await.unwrap();
    parts.adapter.until_delivered("echo: next").await;

    assert_eq!(parts.engine.seen_texts("chat:c1"), ["hello", "next"]);
    assert_eq!(parts.log.inbound().len(), 2);
    assert_eq!(parts.adapter.delivered_texts(), ["echo: hello", "echo: next"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_message_for_an_unknown_agent_is_refused_and_not_recorded() {
    let parts = Parts::new();
    let runtime = parts.start().await;

    let result = runtime.handle().submit(message("chat:c1", "hello").with_agent("ghost")).await;

    assert!(matches!(&result, Err(Error::UnknownAgent(agent)) if agent.as_str() == "ghost"), "{result:?}");
    assert!(parts.log.inbound().is_empty());
    runtime.shutdown().await;
    assert!(parts.engine.seen().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_message_naming_no_agent_goes_to_the_first_agent() {
    let parts = Parts::new();
    let runtime = Runtime::builder()
        .engine(parts.engine.clone())
        .log(parts.log.clone())
        .adapter(parts.adapter.clone())
        .agent("main")
        .agent("helper")
        .start()
        .await
        .unwrap();
    let handle = runtime.handle();
    assert_eq!(handle.default_agent().as_str(), "main");

    handle.submit(message("chat:c1", "to nobody")).await.unwrap();
    handle.submit(message("chat:c1", "to helper").with_agent("helper")).await.unwrap();
    parts.engine.until_seen(2).await;

    let nobody = parts.engine.seen_text("to nobody");
    let helper = parts.engine.seen_text("to helper");
    assert_eq!(nobody.agent.as_str(), "main");
    assert_eq!(helper.agent.as_str(), "helper");
    assert_ne!(nobody.task, helper.task, "the same conversation id under two agents is two conversations");
    let agents: Vec<_> = parts.log.inbound().into_iter().map(|m| m.agent.unwrap().to_string()).collect();
    assert_eq!(agents, ["main", "helper"]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_empty_adapter_key_defaults_to_the_source() {
    let parts = Parts::new();
    let runtime = parts.start().await;

    runtime.handle().submit(message("chat:c1", "hello").with_adapter("")).await.unwrap();

    parts.adapter.until_delivered("echo: hello").await;
    assert_eq!(parts.engine.seen_text("hello").adapter, "chat");
    assert_eq!(parts.log.inbound()[0].adapter, "chat");
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_routed_message_is_announced() {
    let parts = Parts::new();
    let runtime = parts.start().await;
    let mut events = runtime.handle().subscribe();

    let id = runtime.handle().submit(message("chat:c1", "hello")).await.unwrap();
    parts.adapter.until_delivered("echo: hello").await;

    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let RuntimeEvent::MessageReceived { agent, conversation, message_id } = event {
            received.push((agent.to_string(), conversation.to_string(), message_id));
        }
    }
    assert_eq!(received, [("main".to_owned(), "chat:c1".to_owned(), id)]);
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_builder_refuses_to_start_without_an_engine_a_log_or_an_agent() {
    let engine = EchoEngine::new();
    let log = MemoryLog::new();

    let no_engine = Runtime::builder().log(log.clone()).agent("main").start().await.err();
    let no_log = Runtime::builder().engine(engine.clone()).agent("main").start().await.err();
    let no_agent = Runtime::builder().engine(engine.clone()).log(log.clone()).start().await.err();

    for (result, part) in [(no_engine, "engine"), (no_log, "log"), (no_agent, "agent")] {
        match result {
            Some(Error::Missing(what)) => assert!(what.contains(part), "{what:?} should name the {part}"),
            other => panic!("expected Error::Missing naming the {part}, got {other:?}"),
        }
    }
    assert_eq!(engine.tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn messages_left_unhandled_by_a_previous_run_are_processed_at_start() {
    let parts = Parts::new();
    parts.log.seed_handled(message("chat:c1", "answered long ago").with_agent("main").with_id("old"));
    parts.log.seed_unhandled(message("chat:c1", "first").with_agent("main").with_id("u1"));
    parts.log.seed_unhandled(message("chat:c2", "other").with_agent("main").with_id("u2"));
    parts.log.seed_unhandled(message("chat:c1", "second").with_agent("main").with_id("u3"));

    let runtime = parts.start().await;
    // A message arriving after the start queues behind the recovered ones.
    runtime.handle().submit(message("chat:c1", "new")).await.unwrap();

    for id in ["u1", "u2", "u3"] {
        parts.log.until_handled(&MessageId::new(id)).await;
    }
    parts.adapter.until_delivered("echo: new").await;
    assert_eq!(parts.engine.seen_texts("chat:c1"), ["first", "second", "new"]);
    assert_eq!(parts.engine.seen_texts("chat:c2"), ["other"]);
    assert!(!parts.engine.seen().iter().any(|s| s.id.as_str() == "old"), "a handled message was processed again");
    runtime.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn status_counts_live_conversations_and_lists_agents_and_adapters() {
    let parts = Parts::new();
    let runtime = Runtime::builder()
        .engine(parts.engine.clone())
        .log(parts.log.clone())
        .adapter(parts.adapter.clone())
        .agent("main")
        .agent("helper")
        .start()
        .await
        .unwrap();
    let handle = runtime.handle();

    let idle = handle.status().await.unwrap();
    assert_eq!(idle.conversations, 0);
    assert_eq!(idle.agents, [AgentId::new("main"), AgentId::new("helper")]);
    assert_eq!(idle.adapters, ["chat"]);

    handle.submit(message("chat:c1", "a")).await.unwrap();
    handle.submit(message("chat:c1", "b")).await.unwrap();
    handle.submit(message("chat:c2", "c")).await.unwrap();
    handle.submit(message("chat:c2", "d").with_agent("helper")).await.unwrap();
    parts.engine.until_seen(4).await;
    assert_eq!(handle.status().await.unwrap().conversations, 3);

    runtime.shutdown().await;
    assert!(matches!(handle.status().await, Err(Error::ShuttingDown)));
}

#[tokio::test(start_paused = true)]
async fn a_binding_gives_its_agent_and_response_mode_to_the_messages_it_matches() {
    let parts = Parts::new();
    let runtime = Runtime::builder()
        .engine(parts.engine.clone())
        .log(parts.log.clone())
        .adapter(parts.adapter.clone())
        .agent("main")
        .agent("watcher")
        .binding(
            spacebot_core::Binding::new("watcher", "chat")
                .with_users(["lurker"])
                .with_response_mode(spacebot_core::ResponseMode::Observe),
        )
        .start()
        .await
        .unwrap();
    let handle = runtime.handle();
    let lurking = spacebot_core::InboundMessage::text("chat", "chat:c1", spacebot_core::Sender::new("lurker"), "psst");
    handle.submit(lurking).await.unwrap();
    handle.submit(message("chat:c2", "hello")).await.unwrap();
    parts.engine.until_seen(2).await;
    let recorded = parts.log.inbound();
    let mode = |text: &str| {
        let message = recorded.iter().find(|m| m.content.text() == text).expect("recorded");
        (
            message.agent.as_ref().map(|agent| agent.to_string()),
            message.metadata.get(spacebot_core::RESPONSE_MODE_KEY).and_then(|v| v.as_str()).map(str::to_owned),
        )
    };
    assert_eq!(mode("psst"), (Some("watcher".to_owned()), Some("observe".to_owned())));
    assert_eq!(mode("hello"), (Some("main".to_owned()), None), "no binding: the default agent, its own mode");
    runtime.shutdown().await;
}
