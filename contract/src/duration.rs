//! Durations as flb-fanout's properties and job-wrapper's flags spell them: a number (whole or
//! decimal) and a unit, `ms`, `s`/`sec`, `m`/`min` or `h`, in any case; a bare number is
//! seconds. `30s`, `500ms`, `2m`, `1.5h`, `10`.

use std::time::Duration;

/// The duration `text` spells, or `None`.
pub fn parse(text: &str) -> Option<Duration> {
    let text = text.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_seconds() {
        let cases = [
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("2MIN", 120_000),
            ("1.5h", 5_400_000),
            (" 10 ", 10_000),
            ("0.25sec", 250),
        ];
        for (text, millis) in cases {
            assert_eq!(parse(text), Some(Duration::from_millis(millis)), "{text}");
        }
        for bad in ["", "s", "ten", "5d", "-1s", "1e400s"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
