//! `spacebot usage`: the tokens the agents' model calls used, per day, agent, model and process
//! kind, with their cost where `[llm.prices]` sets one, read from the running daemon.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::Value;

use crate::cli::{GlobalArgs, UsageArgs};
use crate::client::{Client, block_on};

pub(crate) fn run(global: &GlobalArgs, args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let query = match (&args.days, &args.since) {
        (Some(days), _) => format!("days={days}"),
        (None, Some(since)) => {
            // The daemon checks it is a real day; this keeps the query string plain.
            let shaped = since.len() == 10
                && since.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() });
            if !shaped {
                bail!("--since must be a day as YYYY-MM-DD, got `{since}`");
            }
            format!("since={since}")
        }
        (None, None) => String::new(),
    };
    let client = Client::new(global)?;
    let report = block_on(client.usage(&query))??;
    print!("{}", render(&report));
    Ok(ExitCode::SUCCESS)
}

/// The report as a table, one line per row, then the total.
fn render(report: &Value) -> String {
    let rows = report["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() {
        return "no model calls recorded yet\n".to_owned();
    }
    let text = |row: &Value, key: &str| row[key].as_str().unwrap_or("?").to_owned();
    let number = |row: &Value, key: &str| row[key].as_u64().unwrap_or(0).to_string();
    let cost = |row: &Value| row["cost_usd"].as_f64().map_or_else(|| "-".to_owned(), |cost| format!("${cost:.4}"));
    let mut lines = vec![[
        "day".to_owned(),
        "agent".to_owned(),
        "model".to_owned(),
        "process".to_owned(),
        "requests".to_owned(),
        "input".to_owned(),
        "output".to_owned(),
        "cost".to_owned(),
    ]];
    for row in rows {
        lines.push([
            text(row, "day"),
            text(row, "agent"),
            text(row, "model"),
            text(row, "process"),
            number(row, "requests"),
            number(row, "input_tokens"),
            number(row, "output_tokens"),
            cost(row),
        ]);
    }
    let total = &report["total"];
    lines.push([
        "total".to_owned(),
        String::new(),
        String::new(),
        String::new(),
        number(total, "requests"),
        number(total, "input_tokens"),
        number(total, "output_tokens"),
        cost(total),
    ]);
    let widths: Vec<usize> =
        (0..8).map(|i| lines.iter().map(|line| line[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            // Text left-aligned, figures right-aligned.
            .map(
                |(i, cell)| {
                    if i < 4 { format!("{cell:<w$}", w = widths[i]) } else { format!("{cell:>w$}", w = widths[i]) }
                },
            )
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_lines_up_and_shows_a_dash_where_no_price_is_set() {
        let report = json!({
            "rows": [
                { "day": "2026-12-06", "agent": "main", "model": "main/gpt", "process": "channel",
                  "requests": 2, "input_tokens": 1200, "output_tokens": 40, "cost_usd": 0.0025 },
                { "day": "2026-12-06", "agent": "main", "model": "local/free", "process": "worker",
                  "requests": 1, "input_tokens": 7, "output_tokens": 3, "cost_usd": null },
            ],
            "total": { "requests": 3, "input_tokens": 1207, "output_tokens": 43, "cost_usd": null },
        });
        let table = render(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[1].contains("main/gpt") && lines[1].ends_with("$0.0025"), "{table}");
        assert!(lines[2].ends_with(" -"), "{table}");
        assert!(lines[3].starts_with("total") && lines[3].contains("1207"), "{table}");
        assert_eq!(lines[0].len(), lines[1].len(), "columns line up:\n{table}");
        assert_eq!(render(&json!({ "rows": [] })), "no model calls recorded yet\n");
    }
}
