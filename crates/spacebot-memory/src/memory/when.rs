//! Periods a recall query names: "in March 2024", "May 2023", "in 2023". Time-aware recall
//! ranks what was said within the period as a list of its own (see `recall.rs`), so "what did
//! Nate cook in March 2024" finds the March dish, not every dish.
//!
//! Only explicit calendar periods are read; relative ones ("last month") need the reader's
//! clock and time zone, and are left to the words.

use chrono::{NaiveDate, TimeZone, Utc};

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// The period the text names, as `[since, until)` in milliseconds since the epoch: the first
/// month and year ("March 2024", "Mar 2024"), else the first year alone after "in", "during" or
/// "of" ("in 2023"). Years from 1900 to 2199.
pub(crate) fn period_named(text: &str) -> Option<(i64, i64)> {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase).collect();
    for pair in words.windows(2) {
        if let (Some(month), Some(year)) = (month(&pair[0]), year(&pair[1])) {
            let start = NaiveDate::from_ymd_opt(year, month, 1)?;
            let end = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            return Some((millis(start), millis(end)));
        }
    }
    for pair in words.windows(2) {
        if matches!(pair[0].as_str(), "in" | "during" | "of")
            && let Some(year) = year(&pair[1])
        {
            return Some((
                millis(NaiveDate::from_ymd_opt(year, 1, 1)?),
                millis(NaiveDate::from_ymd_opt(year + 1, 1, 1)?),
            ));
        }
    }
    None
}

/// 1-based month of a month name or its three-letter abbreviation ("may" is both).
fn month(word: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|name| *name == word || (word.len() == 3 && name.starts_with(word)))
        .and_then(|index| u32::try_from(index + 1).ok())
}

fn year(word: &str) -> Option<i32> {
    if word.len() != 4 {
        return None;
    }
    word.parse::<i32>().ok().filter(|year| (1900..2200).contains(year))
}

fn millis(date: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default()).timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        millis(NaiveDate::from_ymd_opt(y, m, d).unwrap())
    }

    #[test]
    fn a_month_and_year_name_that_month() {
        assert_eq!(period_named("What did Nate cook in March 2024?"), Some((day(2024, 3, 1), day(2024, 4, 1))));
        assert_eq!(period_named("trips during Dec 2023"), Some((day(2023, 12, 1), day(2024, 1, 1))));
        assert_eq!(period_named("sep 2023 plans"), Some((day(2023, 9, 1), day(2023, 10, 1))));
    }

    #[test]
    fn a_year_after_in_names_the_year() {
        assert_eq!(period_named("Where did Joanna travel in 2023?"), Some((day(2023, 1, 1), day(2024, 1, 1))));
    }

    #[test]
    fn no_period_is_read_from_ordinary_words_and_numbers() {
        assert_eq!(period_named("What did Nate cook for dinner?"), None);
        assert_eq!(period_named("I may go, 2023 people came"), None, "`may` is a month only before a year");
        assert_eq!(period_named("room 1024 in 99999"), None);
        assert_eq!(period_named("the march 12 protest"), None);
    }
}
