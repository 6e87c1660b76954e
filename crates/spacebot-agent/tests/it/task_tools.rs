//! Workers using the built-in task tools through the real channel: files confined to the
//! workspace, whatever path the model tries.

use std::sync::Arc;

use serde_json::json;

use spacebot_agent::{ChannelSettings, TaskToolSettings};
use spacebot_core::TerminalState;
use spacebot_testing::{MemoryLog, ScriptedTurn};

use crate::processes::{Models, done, reply, spawn};
use crate::support::{CONV, last_user_raw, start, tool_results};

#[tokio::test(start_paused = true)]
async fn a_worker_writes_reads_and_lists_in_its_workspace_and_cannot_escape() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("secret.txt"), "top secret").expect("write");
    let workspace = dir.path().join("workspace");
    let models = Models::new();
    let tools = TaskToolSettings::default().with_workspace(&workspace).with_web_fetch(None);
    let profile = models.profile(ChannelSettings::default()).with_task_tools(tools);
    let mut h = start(profile, Arc::new(MemoryLog::new())).await;

    models.worker.push_all([
        ScriptedTurn::tool_call("file_write", json!({"path": "notes/todo.txt", "content": "buy milk"})),
        ScriptedTurn::tool_call("file_read", json!({"path": "../secret.txt"})),
        ScriptedTurn::tool_call("file_list", json!({"path": "notes"})),
        ScriptedTurn::tool_call("file_read", json!({"path": "notes/todo.txt"})),
        done("saved the todo"),
    ]);
    models.channel.push_all([spawn("save my todo"), reply("saving"), reply("saved")]);
    h.say(CONV, "remember to buy milk");
    assert_eq!(h.wait_turns(2).await.len(), 2);

    assert_eq!(std::fs::read_to_string(workspace.join("notes/todo.txt")).expect("written"), "buy milk");
    let last = models.worker.requests().pop().expect("requests");
    let results = tool_results(&last);
    assert_eq!(results[0], "wrote 8 bytes to notes/todo.txt");
    assert!(results[1].contains("outside the workspace") && !results[1].contains("top secret"), "{}", results[1]);
    assert_eq!(results[2], "todo.txt");
    assert_eq!(results[3], "buy milk");
    let names: Vec<_> = last.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["file_read", "file_write", "file_list", "shell", "send_file", "set_status"]);
    assert_eq!(h.finished()[0].2, TerminalState::Done);
    assert!(last_user_raw(&models.channel.requests()[2]).contains("done: saved the todo"));
    h.shutdown().await;
}
