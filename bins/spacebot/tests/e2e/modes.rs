//! Command authority through the real binary: with `admins` set, a stranger's `/pause` is refused
//! in the conversation (which goes on answering) while an admin's works. Response modes are
//! tested in the agent's and the runtime's tests (the webhook route names its agent, so no
//! binding applies to it).

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config};

#[tokio::test]
async fn only_admins_pause_and_a_stranger_is_told_so() {
    let model = FakeLlmServer::start().await;
    model.respond_with(|_| FakeReply::text("answered"));
    let config = format!(
        "{}\n[[agents]]\nid = \"main\"\nadmins = [\"webhook:carol\"]\n",
        openai_config(&model.openai_base_url())
    );
    let home = Home::new(&config);
    let daemon = Daemon::start(&home).await;

    // The stranger's /pause is refused, visibly; the conversation still answers.
    daemon.say("main", "ops", "mallory", "/pause").await;
    let answers = daemon.wait_for_answers("main", "ops", 1).await;
    assert_eq!(answers[0]["text"], "Only an admin of this agent can use /pause here.");
    daemon.say("main", "ops", "mallory", "hello").await;
    let answers = daemon.wait_for_answers("main", "ops", 2).await;
    assert_eq!(answers[1]["text"], "answered");
    daemon.say("main", "ops", "carol", "/pause").await;
    let answers = daemon.wait_for_answers("main", "ops", 3).await;
    assert!(answers[2]["text"].as_str().is_some_and(|t| t.starts_with("Paused")), "{answers:#?}");

    daemon.stop().await;
}
