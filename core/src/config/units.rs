//! Human units in the config file and on the command line: durations
//! (`30s`, `500ms`, `5m`) and sizes (`2G`, `512M`). No I/O here.

use std::time::Duration;

/// Parses `500ms`, `30s`, `5m`, `1h`, `1d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; use e.g. 500ms, 30s, 5m, 1h"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`; allowed: ms, s, m, h, d"
            ));
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Parses a mailbox quota into megabytes, the unit of the guide's
/// `accounts.quota` column: `2G` → 2048, `512M` → 512, `1T` → 1048576, a
/// bare number is megabytes, `0` or `unlimited` is no limit.
pub fn parse_quota_mb(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(0);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size; use e.g. 512M, 2G or 0 for unlimited"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "M" | "MB" | "MIB" => 1,
        "G" | "GB" | "GIB" => 1024,
        "T" | "TB" | "TIB" => 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`; allowed: M, G, T (the quota is stored in MB)"
            ));
        }
    };
    let mb = n
        .checked_mul(mult)
        .filter(|&v| v <= u64::from(u32::MAX))
        .ok_or_else(|| format!("`{s}` is too large"))?;
    u32::try_from(mb).map_err(|_| format!("`{s}` is too large"))
}

/// Formats megabytes for humans: `2048` → `2G`, `0` → `unlimited`.
pub fn format_quota_mb(mb: u64) -> String {
    if mb == 0 {
        "unlimited".into()
    } else if mb.is_multiple_of(1024 * 1024) {
        format!("{}T", mb / (1024 * 1024))
    } else if mb.is_multiple_of(1024) {
        format!("{}G", mb / 1024)
    } else {
        format!("{mb}M")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("allowed"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        for d in ["500ms", "30s", "5m", "1h"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn quotas() {
        assert_eq!(parse_quota_mb("2G").unwrap(), 2048);
        assert_eq!(parse_quota_mb("512M").unwrap(), 512);
        assert_eq!(parse_quota_mb("100").unwrap(), 100);
        assert_eq!(parse_quota_mb("0").unwrap(), 0);
        assert_eq!(parse_quota_mb("unlimited").unwrap(), 0);
        assert!(parse_quota_mb("2X").unwrap_err().contains("allowed"));
        assert!(parse_quota_mb("-1").is_err());
        assert!(parse_quota_mb("99999999T").is_err());
        assert_eq!(format_quota_mb(2048), "2G");
        assert_eq!(format_quota_mb(100), "100M");
        assert_eq!(format_quota_mb(0), "unlimited");
    }
}
