//! Reading the Prometheus text format.

/// One sample: `(name, labels, value)`.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Every sample of the exposition.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            Some((name.to_owned(), labels, value))
        })
        .collect()
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    s.split("\",")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().trim_start_matches(',').to_owned(),
                v.trim_matches('"').to_owned(),
            )
        })
        .collect()
}

/// Sum of the samples named `name` whose labels include `labels`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// `{family: type}` from the `# TYPE` lines.
pub fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(n, t)| (n.to_owned(), t.trim().to_owned()))
        .collect()
}
