//! `GET /api/usage`: the tokens the agents' model calls used, per day, agent, model and process
//! kind, read from the [`UsageLedger`], with a cost where a price is configured for the model.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use chrono::{Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use spacebot_core::UsageRow;

use crate::access::Caller;
use crate::api::AppState;
use crate::error::ApiError;

/// What a model's tokens cost, in US dollars per million.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelPrice {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
}

impl ModelPrice {
    /// A price.
    pub fn new(input_per_million: f64, output_per_million: f64) -> Self {
        Self { input_per_million, output_per_million }
    }

    /// What these counts cost.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        // Token counts stay far below 2^53, where f64 starts to round.
        #[allow(clippy::cast_precision_loss)]
        let (input, output) = (input_tokens as f64, output_tokens as f64);
        (input * self.input_per_million + output * self.output_per_million) / 1_000_000.0
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct UsageQuery {
    /// The first day, `YYYY-MM-DD`.
    since: Option<String>,
    /// The last this many days, today included.
    days: Option<u64>,
}

pub(crate) async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require_daemon_wide()?;
    let Query(query) = query.map_err(|error| ApiError::BadRequest(format!("invalid query: {}", error.body_text())))?;
    let Some(ledger) = &state.config.usage else {
        return Err(ApiError::NotFound("usage is not recorded on this server".to_owned()));
    };
    let since = since(&query)?;
    let rows = ledger
        .usage(since)
        .await
        .map_err(|error| ApiError::Internal(format!("can't read the model usage: {error}")))?;
    Ok(Json(render(since, &rows, &state.config.prices)))
}

fn since(query: &UsageQuery) -> Result<Option<NaiveDate>, ApiError> {
    match (&query.since, query.days) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest("give `since` or `days`, not both".to_owned())),
        (Some(text), None) => NaiveDate::parse_from_str(text, "%Y-%m-%d").map(Some).map_err(|error| {
            ApiError::BadRequest(format!("query `since` must be a day as YYYY-MM-DD, got `{text}`: {error}"))
        }),
        (None, Some(0)) => Err(ApiError::BadRequest("query `days` must be at least 1".to_owned())),
        (None, Some(days)) => Ok(Utc::now().date_naive().checked_sub_days(Days::new(days - 1))),
        (None, None) => Ok(None),
    }
}

/// The answer: each row with its cost (`null` without a price for its model), and the totals.
fn render(since: Option<NaiveDate>, rows: &[UsageRow], prices: &BTreeMap<String, ModelPrice>) -> Value {
    let (mut requests, mut input, mut output) = (0u64, 0u64, 0u64);
    let mut cost = Some(0.0);
    let rows: Vec<Value> = rows
        .iter()
        .map(|row| {
            requests += row.requests;
            input += row.input_tokens;
            output += row.output_tokens;
            let row_cost = prices.get(&row.model).map(|price| price.cost(row.input_tokens, row.output_tokens));
            cost = cost.zip(row_cost).map(|(total, row)| total + row);
            json!({
                "day": row.day.format("%Y-%m-%d").to_string(),
                "agent": row.agent,
                "model": row.model,
                "process": row.process,
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cost_usd": row_cost,
            })
        })
        .collect();
    json!({
        "since": since.map(|day| day.format("%Y-%m-%d").to_string()),
        "rows": rows,
        "total": { "requests": requests, "input_tokens": input, "output_tokens": output, "cost_usd": cost },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spacebot_core::{AgentId, ProcessKind};

    #[test]
    fn costs_come_from_prices_and_a_total_without_every_price_is_null() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 6).expect("a day");
        let row = |model: &str, input, output| {
            UsageRow::new(day, AgentId::new("main"), model, ProcessKind::Channel).with_counts(1, input, output)
        };
        let prices = BTreeMap::from([("p/priced".to_owned(), ModelPrice::new(2.0, 8.0))]);
        let priced = render(None, &[row("p/priced", 1_000_000, 500_000)], &prices);
        assert_eq!(priced["rows"][0]["cost_usd"], json!(6.0));
        assert_eq!(priced["total"]["cost_usd"], json!(6.0));
        let mixed = render(Some(day), &[row("p/priced", 1_000_000, 0), row("p/free", 10, 10)], &prices);
        assert_eq!(mixed["rows"][1]["cost_usd"], Value::Null);
        assert_eq!(mixed["total"]["cost_usd"], Value::Null, "a total can't be told without every price");
        assert_eq!(mixed["total"]["input_tokens"], json!(1_000_010));
        assert_eq!(mixed["since"], json!("2026-12-06"));
    }

    #[test]
    fn a_window_is_since_or_days_and_never_both() {
        let query = |since: Option<&str>, days| UsageQuery { since: since.map(str::to_owned), days };
        assert_eq!(since(&query(None, None)).expect("all"), None);
        assert_eq!(since(&query(Some("2026-12-01"), None)).expect("since"), NaiveDate::from_ymd_opt(2026, 12, 1));
        assert_eq!(since(&query(None, Some(1))).expect("today"), Some(Utc::now().date_naive()));
        for bad in [query(Some("yesterday"), None), query(None, Some(0)), query(Some("2026-12-01"), Some(2))] {
            assert!(matches!(since(&bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
    }
}
