//! CronJob schedules as the CronJob controller reads them (the standard parser of
//! `robfig/cron`): five fields (minute, hour, day of month, month, day of week) with `*`,
//! `?`, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (from `a` to the field's maximum),
//! lists, month and weekday names (`JAN`, `mon`), and the descriptors `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`. When both day
//! fields are restricted, a day matching either runs (cron's rule). Times are civil times in
//! the schedule's zone (`spec.timeZone`, an IANA name from the system's zoneinfo; UTC when
//! unset).

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day of month or day of week given as `*` / `?`: both day fields must then match.
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name.
    first_name: u32,
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &DAYS,
    first_name: 0,
};

fn parse_value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.first_name + i as u32);
    }
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })
}

/// One comma-separated part of a field; the bits and whether it was `*` / `?`.
fn parse_range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => {
            if s.contains('/') {
                return Err(format!("too many slashes: {expr}"));
            }
            (r, Some(s))
        }
        None => (expr, None),
    };
    let mut star = false;
    let (start, mut end, single) = if range == "*" || range == "?" {
        star = true;
        (b.min, b.max, false)
    } else {
        let mut parts = range.split('-');
        let low = parse_value(parts.next().unwrap_or_default(), b)?;
        match (parts.next(), parts.next()) {
            (None, _) => (low, low, true),
            (Some(high), None) => (low, parse_value(high, b)?, false),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    };
    let step = match step {
        None => 1,
        Some(s) => {
            let n = s.parse::<u32>().map_err(|_| {
                format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
            })?;
            if single {
                end = b.max;
            }
            if n > 1 {
                star = false;
            }
            n
        }
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step;
    }
    Ok((bits, star))
}

fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for part in field.split(',') {
        let (b, s) = parse_range(part, b)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parse a schedule; the error is the parser's message, as the API server and the
    /// controller report it.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with("@every") => {
                return Err("@every is not supported: use a cron expression".into());
            }
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minute, _) = parse_field(fields[0], &MINUTE)?;
        let (hour, _) = parse_field(fields[1], &HOUR)?;
        let (dom, dom_star) = parse_field(fields[2], &DOM)?;
        let (month, _) = parse_field(fields[3], &MONTH)?;
        let (dow, dow_star) = parse_field(fields[4], &DOW)?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first schedule time strictly after `after`, in `tz` (None within five years).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        // The next whole minute after `after`.
        let first = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let mut day = first.date();
        let last_day = day.checked_add(5.years()).ok()?;
        while day <= last_day {
            if self.month & (1 << day.month()) != 0 && self.day_matches(day) {
                for hour in 0..24i8 {
                    if self.hour & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60i8 {
                        if self.minute & (1 << minute) == 0 {
                            continue;
                        }
                        let dt = DateTime::from_parts(day, Time::new(hour, minute, 0, 0).ok()?);
                        if dt < first {
                            continue;
                        }
                        let ts = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
                        if ts > after {
                            return Some(ts);
                        }
                    }
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The latest schedule time in `(earliest, now]` and how many there were (counted up to
    /// `cap`), in `tz`.
    pub fn most_recent(
        &self,
        earliest: Timestamp,
        now: Timestamp,
        tz: &TimeZone,
        cap: usize,
    ) -> (Option<Timestamp>, usize) {
        let mut count = 0;
        let mut t = earliest;
        while count < cap {
            match self.next(t, tz) {
                Some(n) if n <= now => {
                    count += 1;
                    t = n;
                }
                _ => break,
            }
        }
        if count == 0 {
            return (None, 0);
        }
        (self.latest(earliest, now, tz), count)
    }

    /// The latest schedule time in `(earliest, now]`, scanning back from `now`.
    fn latest(&self, earliest: Timestamp, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let first_day = tz.to_datetime(earliest).date();
        let mut day = tz.to_datetime(now).date();
        while day >= first_day {
            if self.month & (1 << day.month()) != 0 && self.day_matches(day) {
                for hour in (0..24i8).rev() {
                    if self.hour & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in (0..60i8).rev() {
                        if self.minute & (1 << minute) == 0 {
                            continue;
                        }
                        let dt = DateTime::from_parts(day, Time::new(hour, minute, 0, 0).ok()?);
                        let ts = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
                        if ts <= now && ts > earliest {
                            return Some(ts);
                        }
                        if ts <= earliest {
                            return None;
                        }
                    }
                }
            }
            day = day.yesterday().ok()?;
        }
        None
    }
}

/// The zone a CronJob's `spec.timeZone` names (UTC when unset); the error the API server gives.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(n) if n.is_empty() || n.contains("..") || n.starts_with('/') => {
            Err(format!("unknown time zone {n}"))
        }
        Some(n) => jiff::tz::db()
            .get(n)
            .map_err(|_| format!("unknown time zone {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn every_minute_and_descriptors() {
        assert_eq!(
            next("* * * * *", "2026-03-01T10:20:30Z"),
            "2026-03-01T10:21:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-03-01T10:20:00Z"),
            "2026-03-01T10:21:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-03-01T10:20:00Z"),
            "2026-03-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-03-01T10:20:00Z"),
            "2026-03-02T00:00:00Z"
        );
        assert_eq!(
            next("@midnight", "2026-03-01T10:20:00Z"),
            "2026-03-02T00:00:00Z"
        );
        // 2026-03-01 is a Sunday.
        assert_eq!(
            next("@weekly", "2026-03-01T10:20:00Z"),
            "2026-03-08T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-03-01T10:20:00Z"),
            "2026-04-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-03-01T10:20:00Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@annually", "2026-03-01T10:20:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn ranges_steps_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2026-03-01T10:20:00Z"),
            "2026-03-01T10:30:00Z"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-03-01T10:26:00Z"),
            "2026-03-01T10:45:00Z"
        );
        assert_eq!(
            next("10-30/10 9-17 * * *", "2026-03-01T17:30:00Z"),
            "2026-03-02T09:10:00Z"
        );
        assert_eq!(
            next("0 8,12,18 * * *", "2026-03-01T12:00:00Z"),
            "2026-03-01T18:00:00Z"
        );
        assert_eq!(
            next("0 0 * * MON-FRI", "2026-03-01T00:00:00Z"),
            "2026-03-02T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * sat", "2026-03-01T00:00:00Z"),
            "2026-03-07T00:00:00Z"
        );
        assert_eq!(
            next("0 0 1 jun,DEC *", "2026-03-01T00:00:00Z"),
            "2026-06-01T00:00:00Z"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("30 6 ? * *", "2026-03-01T07:00:00Z"),
            "2026-03-02T06:30:00Z"
        );
    }

    #[test]
    fn both_day_fields_restricted_match_either() {
        // The 15th (a Sunday in March 2026) or any Friday, whichever comes first.
        assert_eq!(
            next("0 0 15 * 5", "2026-03-01T00:00:00Z"),
            "2026-03-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 15 * 5", "2026-03-13T00:00:00Z"),
            "2026-03-15T00:00:00Z"
        );
        // A day-of-week step keeps it restricted; `*` in one field makes it AND.
        assert_eq!(
            next("0 0 * * 5", "2026-03-01T00:00:00Z"),
            "2026-03-06T00:00:00Z"
        );
    }

    #[test]
    fn errors_as_the_parser_words_them() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(
            err("* * * *"),
            "expected exactly 5 fields, found 4: [* * * *]"
        );
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("*/2/3 * * * *"), "too many slashes: */2/3");
        assert_eq!(err(""), "empty spec string");
        assert!(err("@every 5m").contains("@every"));
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert!(err("x * * * *").starts_with("failed to parse int from x"));
        assert!(err("CRON_TZ=UTC * * * * *").contains("timeZone"));
        assert_eq!(err("* * * * 7"), "end of range (7) above maximum (6): 7");
    }

    #[test]
    fn time_zones() {
        let s = Schedule::parse("0 9 * * *").unwrap();
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            s.next(ts("2026-03-01T00:00:00Z"), &berlin)
                .unwrap()
                .to_string(),
            "2026-03-01T08:00:00Z"
        );
        assert_eq!(
            s.next(ts("2026-07-01T00:00:00Z"), &berlin)
                .unwrap()
                .to_string(),
            "2026-07-01T07:00:00Z"
        );
        let fixed = time_zone(Some("Etc/GMT-5")).unwrap();
        assert_eq!(
            s.next(ts("2026-03-01T00:00:00Z"), &fixed)
                .unwrap()
                .to_string(),
            "2026-03-01T04:00:00Z"
        );
        assert_eq!(time_zone(None).unwrap(), TimeZone::UTC);
        assert_eq!(
            time_zone(Some("Mars/Olympus")).unwrap_err(),
            "unknown time zone Mars/Olympus"
        );
    }

    #[test]
    fn most_recent_counts_missed_times() {
        let s = Schedule::parse("*/10 * * * *").unwrap();
        let (last, count) = s.most_recent(
            ts("2026-03-01T10:00:00Z"),
            ts("2026-03-01T10:35:00Z"),
            &TimeZone::UTC,
            100,
        );
        assert_eq!(last.unwrap().to_string(), "2026-03-01T10:30:00Z");
        assert_eq!(count, 3);
        let (last, count) = s.most_recent(
            ts("2026-03-01T10:30:00Z"),
            ts("2026-03-01T10:35:00Z"),
            &TimeZone::UTC,
            100,
        );
        assert_eq!((last, count), (None, 0));
        // Past the cap, still the latest one.
        let every = Schedule::parse("* * * * *").unwrap();
        let (last, count) = every.most_recent(
            ts("2026-03-01T00:00:00Z"),
            ts("2026-03-02T00:00:30Z"),
            &TimeZone::UTC,
            100,
        );
        assert_eq!(last.unwrap().to_string(), "2026-03-02T00:00:00Z");
        assert_eq!(count, 100);
    }
}
