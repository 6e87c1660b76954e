//! `spacebot-bench draft [PIECES ...]`: the time a streamed reply's [`DraftScrubber`] takes as the
//! reply grows. Each size pushes that many one-word pieces (`w123 `) through a scrubber holding
//! three configured secrets (with their encodings), as a channel previewing a long reply does,
//! and prints the total and the mean time per piece. A push costs time in the text not yet
//! closed, so the time per piece stays flat as the reply grows; rescanning the whole draft with
//! every piece made it grow with the reply.

use std::time::Instant;

use anyhow::Context;

use spacebot_core::{DraftScrubber, Scrubber};

/// Rounds per size; the fastest is reported.
const ROUNDS: usize = 5;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let sizes: Vec<usize> = match args {
        [] => vec![1_000, 4_000, 16_000],
        sizes => sizes.iter().map(|s| s.parse().context("sizes are numbers of pieces")).collect::<Result<_, _>>()?,
    };
    let scrubber = Scrubber::new().with_secrets(["hunter2 hunter2", "another-secret-value", "sk-config-key-123456"]);
    println!("| pieces | reply length | whole draft | per piece |");
    println!("|---:|---:|---:|---:|");
    for size in sizes {
        let pieces: Vec<String> = (0..size).map(|i| format!("w{i} ")).collect();
        let mut best = None;
        let mut length = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let mut draft = DraftScrubber::new(scrubber.clone());
            for piece in &pieces {
                draft.push(piece);
            }
            let elapsed = started.elapsed();
            length = draft.shown().len();
            best = Some(best.map_or(elapsed, |best: std::time::Duration| best.min(elapsed)));
        }
        let best = best.unwrap_or_default();
        println!(
            "| {size} | {length} bytes | {:.2} ms | {:.2} µs |",
            best.as_secs_f64() * 1e3,
            best.as_secs_f64() * 1e6 / size as f64
        );
    }
    Ok(())
}
