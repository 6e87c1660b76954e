//! Identity files through the real binary: the daemon creates commented templates, what someone
//! writes in them reaches the system prompt, an edit shows at the next turn without a restart,
//! and `config check` says what each file holds.

use spacebot_testing::{FakeLlmServer, FakeReply};

use crate::daemon::{Daemon, Home, openai_config, run_cli};

#[tokio::test]
async fn identity_files_shape_the_prompt_and_are_read_again_each_turn() {
    let model = FakeLlmServer::start().await;
    model.respond_with(|_| FakeReply::text("ok"));
    let home = Home::new(&openai_config(&model.openai_base_url()));
    let daemon = Daemon::start(&home).await;
    let dir = home.data_dir().join("agents/main");
    let template = std::fs::read_to_string(dir.join("SOUL.md")).expect("a template was created");
    assert!(template.starts_with("<!--"), "{template}");

    daemon.say("main", "id", "alice", "hello").await;
    daemon.wait_for_answers("main", "id", 1).await;
    let system = model.last_request().and_then(|r| r.system_text()).expect("a system prompt");
    assert!(!system.contains("## Soul"), "templates add nothing: {system}");

    std::fs::write(dir.join("SOUL.md"), "Answer like a lighthouse keeper.").expect("write");
    daemon.say("main", "id", "alice", "and now?").await;
    daemon.wait_for_answers("main", "id", 2).await;
    let system = model.last_request().and_then(|r| r.system_text()).expect("a system prompt");
    assert!(system.contains("## Soul\n\nAnswer like a lighthouse keeper."), "{system}");
    daemon.stop().await;

    let config = home.config_path();
    let data = home.data_dir();
    let check = run_cli(
        &["config", "check", "--config", config.to_str().expect("utf-8"), "--data-dir", data.to_str().expect("utf-8")],
        &[],
        home.dir.path(),
    );
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("identity") && out.contains("SOUL.md 32 bytes") && out.contains("USER.md empty"), "{out}");
}
