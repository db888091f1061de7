//! Durations on the command line, as Go writes them (`1m30s`, `90s`, `2h`, `500ms`,
//! `1h2m3s`, `1.5h`), the way kubectl and helm take `--timeout`. A bare number stays a number
//! of seconds, as these flags took before.

use std::time::Duration;

/// What every duration error shows.
const EXAMPLE: &str = "use a Go duration such as 1m30s, 90s, 2h or 500ms (units h, m, s, ms, us, ns), or a whole number of seconds";

/// Parses a Go duration (`1h2m3s`, `1.5h`, `500ms`, `0`) or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("{s:?} is too large; {EXAMPLE}"));
    }
    parse_go(s).map_err(|why| format!("bad duration {s:?}: {why}; {EXAMPLE}"))
}

/// A duration of whole seconds within `min..=max` seconds.
pub fn parse_seconds(s: &str, min: u64, max: u64) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "{s:?} is not a whole number of seconds; use for example 90s or 1m30s"
        ));
    }
    if d.as_secs() < min || d.as_secs() > max {
        return Err(format!(
            "{s:?} is out of range: use {} to {}",
            go_format(Duration::from_secs(min)),
            go_format(Duration::from_secs(max))
        ));
    }
    Ok(d)
}

/// Formats a duration as Go does (`1h2m3s`, `500ms`, `0s`).
pub fn go_format(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d.as_secs() == 0 {
        let ns = d.subsec_nanos();
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1_000) {
            format!("{}us", ns / 1_000)
        } else {
            format!("{ns}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    let frac = d.subsec_nanos();
    if frac == 0 {
        out.push_str(&format!("{s}s"));
    } else {
        let f = format!("{frac:09}");
        out.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
    }
    out
}

/// Go's `time.ParseDuration` for durations that are not negative.
fn parse_go(s: &str) -> Result<Duration, &'static str> {
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err("a duration cannot be negative");
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("it is empty");
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err("each part needs a number");
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("each number needs a unit"),
            _ => return Err("unknown unit"),
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| "a number is too large")?
        };
        let mut part = whole.checked_mul(scale).ok_or("it is too large")?;
        // The fraction, to the nanosecond (further digits are dropped, as Go does).
        let mut unit_scale = scale;
        for d in frac.bytes() {
            unit_scale /= 10;
            if unit_scale == 0 {
                break;
            }
            part += u128::from(d - b'0') * unit_scale;
        }
        total = total.checked_add(part).ok_or("it is too large")?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| "it is too large")?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Duration {
        parse_duration(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn go_forms() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1h2m3s"), Duration::from_secs(3723));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("2m0.25s"), Duration::from_millis(120_250));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(ok("+5m"), Duration::from_secs(300));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        // Units in any order and repeated, as Go allows.
        assert_eq!(ok("30s1m"), Duration::from_secs(90));
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(ok("60"), Duration::from_secs(60));
        assert_eq!(ok("300"), Duration::from_secs(300));
    }

    #[test]
    fn errors_show_an_example() {
        for bad in [
            "", "soon", "5d", "1m 30s", "-5s", "1.5", "s", "1h30", "5sec", "1..5s", "ms",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("1m30s"), "{bad}: {e}");
        }
        let e = parse_duration("99999999999999999999h").unwrap_err();
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn seconds_flags_take_whole_seconds_in_range() {
        assert_eq!(parse_seconds("10m", 1, 86400), Ok(Duration::from_secs(600)));
        assert_eq!(parse_seconds("600", 1, 86400), Ok(Duration::from_secs(600)));
        let e = parse_seconds("1500ms", 1, 3600).unwrap_err();
        assert!(e.contains("whole number of seconds"), "{e}");
        let e = parse_seconds("2h", 1, 3600).unwrap_err();
        assert!(e.contains("1s to 1h0m0s"), "{e}");
        assert!(parse_seconds("0s", 1, 3600).is_err());
    }

    #[test]
    fn go_format_reads_back() {
        for d in [
            Duration::ZERO,
            Duration::from_millis(500),
            Duration::from_secs(90),
            Duration::from_secs(3723),
            Duration::from_millis(1500),
            Duration::from_nanos(7),
        ] {
            assert_eq!(ok(&go_format(d)), d, "{}", go_format(d));
        }
        assert_eq!(go_format(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(go_format(Duration::from_secs(300)), "5m0s");
    }
}
