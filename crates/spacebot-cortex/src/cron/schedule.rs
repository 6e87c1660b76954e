//! When a cron job runs: its cron expression read in its time zone (croner resolves daylight
//! saving: a time skipped by a spring-forward runs at the first valid time after the gap, one
//! repeated by a fall-back runs once), or a fixed interval, and its active hours.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

use spacebot_core::{CronError, CronJob};

/// A validated schedule.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    timing: Timing,
    timezone: Tz,
    active_hours: Option<(u8, u8)>,
}

#[derive(Debug, Clone)]
enum Timing {
    Cron(Box<Cron>),
    Every(Duration),
}

/// The shortest interval a job may have.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Schedule {
    /// Reads and checks a job's definition; the error names the field at fault.
    pub(crate) fn of(job: &CronJob) -> Result<Self, CronError> {
        let invalid = |message: String| Err(CronError::Invalid(message));
        if job.id.is_empty()
            || !job.id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || job.id.len() > 64
        {
            return invalid(format!("`id` '{}' must be 1 to 64 letters, digits, '-', '_' or '.'", job.id));
        }
        if job.prompt.trim().is_empty() {
            return invalid("`prompt` is empty".to_owned());
        }
        if job.delivery_target().is_none() {
            return invalid(format!("`deliver_to` '{}' must be `adapter:target`", job.deliver_to));
        }
        let timing = match (&job.cron, job.every) {
            (Some(expression), None) => {
                let parser = CronParser::builder().seconds(Seconds::Optional).build();
                match parser.parse(expression) {
                    Ok(cron) => Timing::Cron(Box::new(cron)),
                    Err(error) => return invalid(format!("`cron` '{expression}' is not a cron expression: {error}")),
                }
            }
            (None, Some(every)) if every >= MIN_INTERVAL => Timing::Every(every),
            (None, Some(every)) => return invalid(format!("`every` {every:?} is shorter than one second")),
            (Some(_), Some(_)) => return invalid("set `cron` or `every`, not both".to_owned()),
            (None, None) => return invalid("set `cron` or `every`".to_owned()),
        };
        let timezone = match job.timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => return invalid(format!("`timezone` '{name}' is not an IANA time zone")),
            },
        };
        if let Some((start, end)) = job.active_hours
            && (start > 23 || end > 24 || start == end)
        {
            return invalid(format!("`active_hours` [{start}, {end}] must be two different hours from 0 to 24"));
        }
        Ok(Self { timing, timezone, active_hours: job.active_hours })
    }

    /// The first run of a job planned at `now`.
    pub(crate) fn first_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Cron(cron) => self.next_cron(cron, now),
            Timing::Every(every) => Some(now + *every),
        }
    }

    /// The run after one due at `due`, seen at `now`: the first slot after `now`, so runs
    /// missed while the daemon was down are not made up one by one.
    pub(crate) fn next_after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.timing {
            Timing::Cron(cron) => self.next_cron(cron, now.max(due)),
            Timing::Every(every) => {
                let step = chrono::Duration::from_std(*every).ok()?;
                let behind = (now - due).num_milliseconds().max(0);
                let steps = behind / step.num_milliseconds().max(1) + 1;
                Some(due + step * i32::try_from(steps).ok()?)
            }
        }
    }

    fn next_cron(&self, cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        match cron.find_next_occurrence(&local, false) {
            Ok(next) => Some(next.with_timezone(&Utc)),
            Err(error) => {
                tracing::warn!(%error, "a cron expression has no next run");
                None
            }
        }
    }

    /// Whether a run due at `at` falls in the active hours (always, without them).
    pub(crate) fn is_active(&self, at: DateTime<Utc>) -> bool {
        let Some((start, end)) = self.active_hours else { return true };
        let hour = u8::try_from(at.with_timezone(&self.timezone).hour()).unwrap_or(0);
        if start < end { (start..end).contains(&hour) } else { hour >= start || hour < end }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn job() -> CronJob {
        CronJob::new("main", "daily", "summarise", "webhook:c1")
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_berlin_evening_job_keeps_its_local_hour_across_the_spring_change() {
        // Berlin moves from UTC+1 to UTC+2 on 2026-03-29.
        let schedule = Schedule::of(&job().with_cron("0 17 * * *").with_timezone("Europe/Berlin")).unwrap();
        let before = schedule.first_after(utc(2026, 3, 28, 12, 0)).unwrap();
        assert_eq!(before, utc(2026, 3, 28, 16, 0), "17:00 CET is 16:00 UTC");
        let after = schedule.next_after(before, before).unwrap();
        assert_eq!(after, utc(2026, 3, 29, 15, 0), "17:00 CEST is 15:00 UTC");
    }

    #[test]
    fn a_time_the_spring_change_skips_runs_once_right_after_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29 (02:00 jumps to 03:00).
        let schedule = Schedule::of(&job().with_cron("30 2 * * *").with_timezone("Europe/Berlin")).unwrap();
        let next = schedule.first_after(utc(2026, 3, 28, 23, 0)).unwrap();
        assert_eq!(next, utc(2026, 3, 29, 1, 0), "the first valid local time after the gap, 03:00 CEST");
        assert_eq!(schedule.next_after(next, next).unwrap(), utc(2026, 3, 30, 0, 30));
    }

    #[test]
    fn a_time_the_autumn_change_repeats_runs_once() {
        // 02:30 happens twice in Berlin on 2026-10-25.
        let schedule = Schedule::of(&job().with_cron("30 2 * * *").with_timezone("Europe/Berlin")).unwrap();
        let first = schedule.first_after(utc(2026, 10, 24, 23, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30), "02:30 CEST");
        assert_eq!(schedule.next_after(first, first).unwrap(), utc(2026, 10, 26, 1, 30), "not again at 02:30 CET");
    }

    #[test]
    fn intervals_skip_missed_slots_instead_of_making_them_up() {
        let schedule = Schedule::of(&job().with_every(Duration::from_secs(60))).unwrap();
        let due = utc(2026, 1, 1, 12, 0);
        assert_eq!(schedule.next_after(due, due), Some(utc(2026, 1, 1, 12, 1)));
        let later = utc(2026, 1, 1, 15, 30) + chrono::Duration::seconds(10);
        assert_eq!(schedule.next_after(due, later), Some(utc(2026, 1, 1, 15, 31)), "one run, on the grid");
    }

    #[test]
    fn active_hours_are_local_and_may_wrap_past_midnight() {
        let office = Schedule::of(
            &job().with_every(Duration::from_secs(60)).with_timezone("America/New_York").with_active_hours(9, 18),
        )
        .unwrap();
        assert!(office.is_active(utc(2026, 1, 5, 14, 0)), "09:00 in New York");
        assert!(!office.is_active(utc(2026, 1, 5, 23, 0)), "18:00 in New York");
        let night = Schedule::of(&job().with_every(Duration::from_secs(60)).with_active_hours(22, 6)).unwrap();
        assert!(night.is_active(utc(2026, 1, 5, 23, 0)) && night.is_active(utc(2026, 1, 5, 5, 59)));
        assert!(!night.is_active(utc(2026, 1, 5, 12, 0)));
    }

    #[test]
    fn invalid_definitions_name_the_field() {
        let cases = [
            (job(), "set `cron` or `every`"),
            (job().with_cron("not cron"), "`cron`"),
            (job().with_cron("* * * * *").with_every(Duration::from_secs(5)), "not both"),
            (job().with_every(Duration::from_millis(10)), "`every`"),
            (job().with_cron("* * * * *").with_timezone("Mars/Olympus"), "`timezone`"),
            (job().with_cron("* * * * *").with_active_hours(9, 9), "`active_hours`"),
            (CronJob::new("main", "a b", "p", "webhook:c1").with_cron("* * * * *"), "`id`"),
            (CronJob::new("main", "a", "p", "nowhere").with_cron("* * * * *"), "`deliver_to`"),
        ];
        for (job, field) in cases {
            let error = Schedule::of(&job).unwrap_err().to_string();
            assert!(error.contains(field), "{error} should name {field}");
        }
        assert!(Schedule::of(&job().with_cron("*/5 * * * * *")).is_ok(), "six fields: seconds first");
    }
}
