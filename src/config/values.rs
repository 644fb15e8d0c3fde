//! Small value parsers shared by the config reader: durations and `${VAR}` expansion.

use std::time::Duration;

/// Parses `500ms`, `10s`, `15m`, `2h`, `7d` and sums like `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let bytes = s.as_bytes();
    let mut total: u128 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "`{s}` is not a duration like 500ms, 10s, 15m, 2h or 7d"
            ));
        }
        let n: u128 = s[start..i]
            .parse()
            .map_err(|_| format!("`{s}`: number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let millis_per_unit: u128 = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" if bytes.get(i) == Some(&b'.') => {
                return Err(format!(
                    "`{s}`: whole numbers only (e.g. 1500ms or 1s500ms for 1.5s)"
                ))
            }
            "" => return Err(format!("`{s}` needs a unit (ms, s, m, h or d)")),
            other => {
                return Err(format!(
                    "`{s}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ))
            }
        };
        total = total
            .checked_add(n.saturating_mul(millis_per_unit))
            .ok_or_else(|| format!("`{s}`: too large"))?;
    }
    // Ten years is far beyond any sensible setting and keeps arithmetic on
    // timestamps (seconds since the epoch) free of overflow.
    if total > 10 * 365 * 86_400_000 {
        return Err(format!("`{s}` is longer than ten years"));
    }
    Ok(Duration::from_millis(total as u64))
}

/// Replaces `${VAR}` and `${VAR:-default}` with the environment's values.
/// `$${` stands for a literal `${`.
pub fn expand_env(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("`${{{expr}}}` is not a valid variable reference"));
            }
            match (lookup(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!("environment variable {name} is not set"));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn bad_durations_are_explained() {
        for bad in [
            "",
            "10",
            "s",
            "10x",
            "-1s",
            "1.5s",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        let fraction = parse_duration("1.5s").unwrap_err();
        assert!(fraction.contains("whole numbers"), "{fraction}");
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
    }

    #[test]
    fn env_references_expand_with_defaults_and_escapes() {
        let env = |k: &str| (k == "HOST").then(|| "db".to_string());
        assert_eq!(
            expand_env("redis://${HOST}:1", &env).unwrap(),
            "redis://db:1"
        );
        assert_eq!(expand_env("${PORT:-6379}", &env).unwrap(), "6379");
        assert_eq!(expand_env("${HOST:-x}", &env).unwrap(), "db");
        assert_eq!(expand_env("$${HOST}", &env).unwrap(), "${HOST}");
        assert_eq!(expand_env("cost $5", &env).unwrap(), "cost $5");
        assert!(expand_env("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING"));
        assert!(expand_env("${HOST", &env).is_err());
        assert!(expand_env("${A-B}", &env).is_err());
    }
}
