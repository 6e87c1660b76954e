//! `run` with the demo model: a line goes in, the agent's worker calls the custom tool, and the
//! result comes back out as a reply.

use std::sync::Arc;
use std::time::Duration;

use example_embed::{AGENT, DemoModel, DiceRoll, run};

/// Bound on a whole conversation; the demo model answers at once, so this only catches hangs.
const LIMIT: Duration = Duration::from_secs(60);

async fn converse(input: &str, dice: Arc<DiceRoll>) -> String {
    let mut output = Vec::new();
    tokio::time::timeout(LIMIT, run(Arc::new(DemoModel::new()), dice, input.as_bytes(), &mut output))
        .await
        .expect("the program finishes once everything is answered")
        .expect("the program runs");
    String::from_utf8(output).expect("utf-8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roll_goes_through_the_custom_tool_and_the_result_is_replied() {
    let dice = Arc::new(DiceRoll::seeded(42));
    let output = converse("roll 2d6\n", dice.clone()).await;

    let rolls = dice.rolls();
    assert_eq!(rolls.len(), 1, "the worker called dice_roll once: {output}");
    assert_eq!(rolls[0].dice, "2d6");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        vec![format!("{AGENT}: Rolling…"), format!("{AGENT}: You rolled {}", rolls[0].describe())],
        "an acknowledgement, then the roll the tool made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_answered_in_order_and_the_program_ends_with_its_input() {
    let dice = Arc::new(DiceRoll::seeded(7));
    let output = converse("hello\nroll d20\n", dice.clone()).await;

    let rolls = dice.rolls();
    assert_eq!(rolls.len(), 1, "{output}");
    assert_eq!(rolls[0].dice, "1d20");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.first().copied(), Some("assistant: I roll dice. Try `roll 2d6` or `roll d20`."), "{output}");
    assert_eq!(lines.last().copied(), Some(format!("assistant: You rolled {}", rolls[0].describe()).as_str()));
    assert_eq!(lines.len(), 3, "{output}");
}
