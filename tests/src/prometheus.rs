//! A strict parser of the Prometheus text exposition format (0.0.4) for tests: it refuses
//! what a scraper would, and the naming conventions on top, so a test that parses the
//! exporter's output checks its format too.

use std::collections::BTreeMap;

/// One sample line of a Prometheus text exposition.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch what a scraper would refuse,
/// and the conventions on top: every sample's family has HELP then TYPE before it, a family's
/// samples are together and its label sets unique, and counters end in `_total`. Panics with
/// the offending line otherwise.
pub fn parse(text: &str) -> Vec<Sample> {
    try_parse(text).unwrap_or_else(|why| panic!("{why}\n{text}"))
}

/// [`parse`], returning what is wrong instead of panicking.
pub fn try_parse(text: &str) -> Result<Vec<Sample>, String> {
    if !text.ends_with('\n') {
        return Err("the exposition must end with a line feed".into());
    }
    let mut help: BTreeMap<String, ()> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut finished: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples: Vec<Sample> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| Err(format!("line {}: {why}: {line:?}", number + 1));
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            if let Err(why) = check_name(name) {
                return fail(&why);
            }
            if help.insert(name.to_owned(), ()).is_some() {
                return fail("second HELP for one family");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return fail("TYPE needs a name and a type");
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return fail("unknown type");
            }
            if !help.contains_key(name) {
                return fail("TYPE before HELP");
            }
            if kind == "counter" && !name.ends_with("_total") {
                return fail("a counter's name must end in _total");
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return fail("second TYPE for one family");
            }
            if let Some(done) = current.replace(name.to_owned()) {
                finished.push(done);
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let sample = match parse_sample(line) {
            Ok(sample) => sample,
            Err(why) => return fail(&why),
        };
        // A histogram's samples are its name with `_bucket` (with an `le` label), `_sum` and
        // `_count`.
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = sample.name.strip_suffix(suffix)?;
            (types.get(base).map(String::as_str) == Some("histogram"))
                .then(|| (base.to_owned(), *suffix))
        });
        let family = match family {
            Some((base, "_bucket")) if !sample.labels.contains_key("le") => {
                return fail(&format!("a bucket of {base} without an le label"));
            }
            Some((base, _)) => base,
            None if types.get(&sample.name).map(String::as_str) == Some("histogram") => {
                return fail("a histogram's sample without _bucket, _sum or _count");
            }
            None => sample.name.clone(),
        };
        if !types.contains_key(&family) {
            return fail("sample without HELP and TYPE before it");
        }
        if current.as_deref() != Some(family.as_str()) || finished.contains(&family) {
            return fail("sample outside its family's block");
        }
        if samples
            .iter()
            .any(|s| s.name == sample.name && s.labels == sample.labels)
        {
            return fail("label set repeated");
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = inner.find("=\"").ok_or("label without =\"")?;
            let label = &inner[..eq];
            if label.is_empty()
                || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || label.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(format!("bad label name {label:?}"));
            }
            let mut value = String::new();
            let mut chars = inner[eq + 2..].char_indices();
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (i, '"') => break eq + 2 + i + 1,
                    (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => return Err(format!("bad escape \\{other}")),
                    },
                    (_, '\n') => return Err("raw line feed in a label value".into()),
                    (_, c) => value.push(c),
                }
            };
            if labels.insert(label.to_owned(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            inner = &inner[end..];
            inner = inner.strip_prefix(',').unwrap_or(inner);
        }
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = match fields.next().ok_or("no value")? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse::<f64>()
            .map_err(|err| format!("value {text:?}: {err}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|err| format!("timestamp {timestamp:?}: {err}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the value".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The value of the sample `name` with exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == want)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {samples:#?}"))
        .value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test that the parser refuses what a scraper would: a sample without
    /// HELP/TYPE, a counter not ending in _total, a family split in two, a bad escape, a
    /// histogram's bucket without `le` or a sample of it without a histogram suffix; and that
    /// it reads a histogram's buckets, sum and count.
    #[test]
    fn exposition_parser_refuses_malformed_text() {
        let good = "# HELP a_total h\n# TYPE a_total counter\na_total{x=\"q\\\"\"} 1\n";
        assert_eq!(parse(good)[0].labels["x"], "q\"");
        let histogram = "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n\
                         h_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
        assert_eq!(parse(histogram).len(), 4);
        for (bad, why) in [
            ("a 1\n", "without HELP and TYPE"),
            ("# HELP a h\n# TYPE a counter\na 1\n", "must end in _total"),
            (
                "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
                "outside its family's block",
            ),
            ("# HELP a h\n# TYPE a gauge\na{x=\"\\t\"} 1\n", "bad escape"),
            (
                "# HELP h h\n# TYPE h histogram\nh_bucket 1\n",
                "without an le label",
            ),
            (
                "# HELP h h\n# TYPE h histogram\nh 1\n",
                "without _bucket, _sum or _count",
            ),
            (
                "# HELP g h\n# TYPE g gauge\ng_sum 1\n",
                "without HELP and TYPE",
            ),
        ] {
            let err = try_parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
