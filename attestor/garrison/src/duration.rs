//! Durations as operators write them: `90s`, `45m`, `1h`, `30d`.

use anyhow::{Context, bail};
use time::Duration;

/// Parse `<positive integer><unit>` with unit one of s, m, h, d.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .with_context(|| format!("duration {text:?} needs a unit: s, m, h or d (e.g. 30d)"))?;
    let (digits, unit) = text.split_at(split);
    let value: i64 = digits
        .parse()
        .with_context(|| format!("duration {text:?} must start with a whole number"))?;
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("duration {text:?} has unknown unit {unit:?}; use s, m, h or d"),
    };
    let seconds = value
        .checked_mul(per_unit)
        .with_context(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
        assert_eq!(parse_duration("45m").unwrap(), Duration::minutes(45));
        assert_eq!(parse_duration("1h").unwrap(), Duration::hours(1));
        assert_eq!(parse_duration("3650d").unwrap(), Duration::days(3650));
        for bad in ["", "30", "d", "3x", "-3d", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
