//! The custom tool: `dice_roll`, which rolls dice written like `2d6`.
//!
//! Anything implementing [`spacebot_core::Tool`] can be handed to an agent; a tool with a fixed
//! name implements [`spacebot_core::TypedTool`], whose arguments arrive parsed. This one keeps a log
//! of its rolls so the program (and its test) can see that the agent really called it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use spacebot_core::{ToolError, TypedTool};

/// The tool's name, as the model calls it.
pub const DICE_ROLL_TOOL: &str = "dice_roll";

/// Most dice in one roll, and most sides on one die.
const MAX_DICE: u32 = 20;
const MAX_SIDES: u32 = 1000;

/// One roll the tool made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roll {
    /// What was asked for, normalised: `2d6`.
    pub dice: String,
    /// Each die's face.
    pub faces: Vec<u32>,
    /// Their sum.
    pub total: u32,
}

impl Roll {
    /// How the roll is reported to the model: `2d6: 3 + 5 = 8`.
    pub fn describe(&self) -> String {
        let faces: Vec<String> = self.faces.iter().map(u32::to_string).collect();
        format!("{}: {} = {}", self.dice, faces.join(" + "), self.total)
    }
}

/// Rolls dice. Not cryptographic; a seed makes it repeatable.
#[derive(Debug)]
pub struct DiceRoll {
    state: AtomicU64,
    rolls: Mutex<Vec<Roll>>,
}

impl DiceRoll {
    /// A tool seeded from the clock.
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self::seeded(nanos as u64)
    }

    /// A tool whose rolls are the same on every run with the same seed.
    pub fn seeded(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed), rolls: Mutex::new(Vec::new()) }
    }

    /// Every roll so far, oldest first.
    pub fn rolls(&self) -> Vec<Roll> {
        self.rolls.lock().map(|rolls| rolls.clone()).unwrap_or_default()
    }

    /// A number in `1..=sides` (splitmix64; the slight modulo bias does not matter for games).
    fn face(&self, sides: u32) -> u32 {
        let mut z = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % u64::from(sides)) as u32 + 1
    }
}

impl Default for DiceRoll {
    fn default() -> Self {
        Self::new()
    }
}

/// Reads `NdM` (`d6` means `1d6`) into `(count, sides)`.
pub fn parse_dice(text: &str) -> Option<(u32, u32)> {
    let (count, sides) = text.trim().to_ascii_lowercase().split_once('d').map(|(c, s)| (c.to_owned(), s.to_owned()))?;
    let count = if count.is_empty() { 1 } else { count.parse().ok()? };
    let sides = sides.parse().ok()?;
    ((1..=MAX_DICE).contains(&count) && (2..=MAX_SIDES).contains(&sides)).then_some((count, sides))
}

/// The arguments of `roll_dice`.
#[derive(Debug, Deserialize)]
pub struct DiceArgs {
    /// What to roll, like `2d6`.
    #[serde(default)]
    pub dice: String,
}

#[async_trait]
impl TypedTool for DiceRoll {
    const NAME: &'static str = DICE_ROLL_TOOL;
    type Args = DiceArgs;

    fn description(&self) -> String {
        "Roll dice and return each face and the total.".to_owned()
    }

    fn parameters(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "dice": { "type": "string", "description": "What to roll, like `2d6`: count, `d`, sides." }
            },
            "required": ["dice"]
        })
    }

    async fn run(&self, args: DiceArgs) -> Result<String, ToolError> {
        let asked = args.dice.as_str();
        let Some((count, sides)) = parse_dice(asked) else {
            return Err(ToolError::InvalidArguments(format!(
                "`dice` must look like `2d6`: 1 to {MAX_DICE} dice of 2 to {MAX_SIDES} sides, not {asked:?}"
            )));
        };
        let faces: Vec<u32> = (0..count).map(|_| self.face(sides)).collect();
        let roll = Roll { dice: format!("{count}d{sides}"), total: faces.iter().sum(), faces };
        let text = roll.describe();
        if let Ok(mut rolls) = self.rolls.lock() {
            rolls.push(roll);
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use spacebot_core::Tool;

    use super::*;

    #[test]
    fn dice_notation_is_read_within_limits() {
        assert_eq!(parse_dice("2d6"), Some((2, 6)));
        assert_eq!(parse_dice(" D20 "), Some((1, 20)));
        for bad in ["", "d", "2d", "0d6", "21d6", "2d1", "2d1001", "two dice", "2d6+1"] {
            assert_eq!(parse_dice(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn rolls_stay_on_the_dice_and_are_logged() {
        let tool = DiceRoll::seeded(1);
        for _ in 0..50 {
            tool.call(json!({ "dice": "3d4" })).await.expect("a valid roll");
        }
        let rolls = tool.rolls();
        assert_eq!(rolls.len(), 50);
        assert!(rolls.iter().flat_map(|r| &r.faces).all(|f| (1..=4).contains(f)));
        assert!(rolls.iter().all(|r| r.total == r.faces.iter().sum::<u32>()));
        let seen: std::collections::HashSet<u32> = rolls.iter().flat_map(|r| r.faces.clone()).collect();
        assert_eq!(seen.len(), 4, "every face comes up in 150 throws");
    }

    #[tokio::test]
    async fn a_seed_repeats_and_bad_arguments_are_explained() {
        let (a, b) = (DiceRoll::seeded(9), DiceRoll::seeded(9));
        assert_eq!(a.call(json!({ "dice": "4d6" })).await.ok(), b.call(json!({ "dice": "4d6" })).await.ok());
        let error = a.call(json!({ "dice": "lots" })).await.expect_err("not dice");
        assert!(error.to_string().contains("must look like `2d6`"), "{error}");
    }
}
