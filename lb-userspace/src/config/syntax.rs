//! XLB000: turning TOML and serde errors into diagnostics that name the field, the allowed
//! values and the fix.
//!
//! toml reports an error as a message and a byte span but not the field it is in, so the field
//! path is found by locating the span in the document's spanned tree.

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use serde::Deserialize as _;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Source};
use super::file::ConfigFile;
use super::model::{
    ALERT_WINDOW_SECONDS_RANGE, BPFFS_ROOT, DEFAULT_ALERT_WINDOW_SECONDS,
    DEFAULT_DRAIN_TIMEOUT_SECONDS, DEFAULT_EXPECT_STATUS, DEFAULT_FALL, DEFAULT_FLOOD_FACTOR,
    DEFAULT_FLOOD_MIN_RATE, DEFAULT_FLOW_TABLE_SIZE, DEFAULT_INTERVAL_MS,
    DEFAULT_MAX_BACKEND_SHARE, DEFAULT_MAX_EVICTED_PROVEN, DEFAULT_MAX_SHARE,
    DEFAULT_METRICS_ADDRESS, DEFAULT_MIN_BACKENDS, DEFAULT_MIN_HEALTHY, DEFAULT_MIN_NEW_FLOWS,
    DEFAULT_MTU, DEFAULT_PIN_PATH, DEFAULT_RISE, DEFAULT_SKEW_FACTOR, DEFAULT_TABLE_SIZE,
    DEFAULT_TIMEOUT_MS, DEFAULT_WEIGHT, DRAIN_TIMEOUT_SECONDS_RANGE, FLOW_TABLE_SIZE_RANGE,
    HTTP_STATUS_RANGE, MIN_HEALTHY_RANGE, MTU_RANGE, SLOTS_PER_BACKEND,
};
use super::reparse::Reparse;
use super::rules::SYNTAX;

/// The file's typed form, or every syntax error (or the first shape error) in it.
pub(crate) fn parse(source: &Source<'_>) -> Result<ConfigFile, Vec<Diagnostic>> {
    let (tree, errors) = DeTable::parse_recoverable(source.text);
    if !errors.is_empty() {
        let fields = index(&tree);
        return Err(errors
            .iter()
            .map(|error| diagnostic(source, &fields, error))
            .collect());
    }
    // The typed form comes from the tree already parsed (`toml::from_str` would parse the
    // text again); the index of fields is only for naming an error's field, so it is built
    // only then, from a second parse of a file that is already known to be wrong.
    ConfigFile::deserialize(toml::de::Deserializer::from(tree)).map_err(|error| {
        let (tree, _) = DeTable::parse_recoverable(source.text);
        vec![diagnostic(source, &index(&tree), &error)]
    })
}

/// [`parse`], reusing the VIPs `reparse` kept of the last text it parsed where that gives the
/// same file; the diagnostics are always the full parse's. `text` is the source's, shared for
/// `reparse` to keep.
pub(crate) fn parse_reusing(
    source: &Source<'_>,
    text: &Arc<str>,
    reparse: &mut Reparse,
) -> Result<ConfigFile, Vec<Diagnostic>> {
    match reparse.parse(text) {
        Some(file) => Ok(file),
        None => parse(source),
    }
}

/// One key or value of the document and the path of its field.
struct Field {
    path: String,
    span: Range<usize>,
}

/// Every key and value in the document, with its path (`vip[0].backend[2].weight`).
fn index(tree: &Spanned<DeTable<'_>>) -> Vec<Field> {
    let mut fields = Vec::new();
    walk_table(tree.get_ref(), "", &mut fields);
    fields
}

fn walk_table(table: &DeTable<'_>, prefix: &str, fields: &mut Vec<Field>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        fields.push(Field {
            path: path.clone(),
            span: key.span(),
        });
        walk_value(value, path, fields);
    }
}

fn walk_value(value: &Spanned<DeValue<'_>>, path: String, fields: &mut Vec<Field>) {
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, &path, fields),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, format!("{path}[{i}]"), fields);
            }
        }
        _ => {}
    }
    fields.push(Field {
        path,
        span: value.span(),
    });
}

/// The path of the field an error span is about: the key or value with exactly that span, else
/// the smallest one containing it, else the last one before it (a syntax error after a key).
fn locate<'f>(fields: &'f [Field], span: &Range<usize>) -> Option<&'f str> {
    let exact = fields.iter().filter(|f| f.span == *span);
    let containing = fields
        .iter()
        .filter(|f| f.span.start <= span.start && span.start < f.span.end);
    let deepest = |f: &&Field| (usize::MAX - (f.span.end - f.span.start), f.path.len());
    exact
        .max_by_key(|f| f.path.len())
        .or_else(|| containing.max_by_key(deepest))
        .or_else(|| {
            fields
                .iter()
                .filter(|f| f.span.start <= span.start)
                .max_by_key(|f| (f.span.start, f.path.len()))
        })
        .map(|f| f.path.as_str())
}

fn diagnostic(source: &Source<'_>, fields: &[Field], error: &toml::de::Error) -> Diagnostic {
    let span = error.span().unwrap_or(0..0);
    let path = locate(fields, &span).unwrap_or("");
    let snippet = source.text.get(span.clone()).unwrap_or("");
    let (field, message, fix) = explain(error.message(), path, snippet);
    source.diagnostic(&SYNTAX, span, field, message, fix)
}

/// The field, message and fix for a toml or serde error `message` at `path`.
fn explain(message: &str, path: &str, snippet: &str) -> (String, String, String) {
    let leaf = leaf(path);
    let leaf_hint = hint(leaf);
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (unknown, allowed) = split_expected(rest);
        let parent = parent(path);
        let mut fix = format!("remove `{unknown}`");
        if let Some(close) = closest(&unknown, &allowed) {
            fix = format!("did you mean `{close}`? otherwise {fix}");
        }
        if !allowed.is_empty() {
            fix.push_str(&format!(
                "; the fields of {} are: {}",
                place(parent),
                allowed.join(", ")
            ));
        }
        let message = format!("unknown field `{unknown}` in {}", place(parent));
        return (path.to_owned(), message, fix);
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let missing = rest.trim_matches('`');
        let field = join(path, missing);
        let fix = match hint(missing) {
            Some(hint) => format!("add {} ({})", hint.example, hint.form),
            None => format!("add `{missing}`"),
        };
        let message = format!("missing required field `{missing}` in {}", place(path));
        return (field, message, fix);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, allowed) = split_expected(rest);
        let mut fix = format!("use one of: {}", allowed.join(", "));
        if let Some(close) = closest(&value, &allowed) {
            fix.push_str(&format!(" (did you mean {close}?)"));
        }
        let message = format!("{leaf} = \"{value}\" is not allowed");
        return (path.to_owned(), message, fix);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let message = format!(
            "{leaf} must be {}, not {}",
            type_name(expected),
            found_name(found)
        );
        return (path.to_owned(), message, hint_fix(leaf_hint, leaf));
    }
    if message == "wanted string or table" {
        // An enum given a number or a boolean.
        let message = format!("{leaf} must be a string, not {snippet}");
        return (path.to_owned(), message, hint_fix(leaf_hint, leaf));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        let found = rest
            .split_once(", expected ")
            .map_or(rest, |(found, _)| found);
        let found = found.trim_start_matches("integer ").trim_matches('`');
        let message = format!("{leaf} = {found} is out of range");
        return (path.to_owned(), message, hint_fix(leaf_hint, leaf));
    }
    if message == "duplicate key" {
        let message = format!("`{snippet}` is set twice in {}", place(parent(path)));
        let fix = "keep one of the two".to_owned();
        return (path.to_owned(), message, fix);
    }
    if message.contains(" is not ") {
        // Our own value errors (file.rs): `"1.2.3" is not an IPv4 or IPv6 address`.
        let message = format!("{leaf} {message}");
        return (path.to_owned(), message, hint_fix(leaf_hint, leaf));
    }
    // The rest are TOML syntax errors ("invalid basic string, expected `\"`").
    let message = format!("invalid TOML: {message}");
    let fix = "correct the TOML syntax here (examples/xlb.toml shows every field)".to_owned();
    (path.to_owned(), message, fix)
}

/// "write it as …, e.g. …" for a field, or a pointer to the example for one we do not know.
fn hint_fix(hint: Option<Hint>, leaf: &str) -> String {
    match hint {
        Some(hint) => format!("write {}, e.g. {}", hint.form, hint.example),
        None => format!("see examples/xlb.toml for the form of `{leaf}`"),
    }
}

/// Splits "`x`, expected one of `a`, `b`" (or "expected `a` or `b`") into `x` and `[a, b]`.
fn split_expected(text: &str) -> (String, Vec<String>) {
    let (value, expected) = text.split_once(", expected ").unwrap_or((text, ""));
    let allowed = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    (value.trim_matches('`').to_owned(), allowed)
}

/// A readable name for a serde "expected" type.
fn type_name(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "i64" => "an integer",
        "f64" => "a number",
        "a sequence" => "an array",
        _ if expected.starts_with("struct ") => "a table",
        _ => expected,
    }
}

/// A readable name for a serde "found" value: `integer `3`` -> `the integer 3`.
fn found_name(found: &str) -> String {
    let found = found.replace('`', "");
    match found.split_once(' ') {
        _ if found == "map" => "a table".to_owned(),
        _ if found == "sequence" => "an array".to_owned(),
        Some(("floating", rest)) => format!("the float {}", rest.trim_start_matches("point ")),
        Some((kind, value)) => format!("the {kind} {value}"),
        None => found,
    }
}

/// `vip[0].backend[2].weight` -> `weight`; `vip[0]` -> `vip`.
fn leaf(path: &str) -> &str {
    let last = path.rsplit('.').next().unwrap_or(path);
    last.split('[').next().unwrap_or(last)
}

/// `vip[0].backend[2].weight` -> `vip[0].backend[2]`.
fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(parent, _)| parent)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// How a message names a table.
fn place(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// The allowed name a mistyped one most likely meant: same letters in another case, or at most
/// two edits away.
fn closest<'a>(typed: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|name| (strsim::levenshtein(&typed.to_lowercase(), name), name))
        .filter(|&(distance, _)| distance <= 2)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, name)| name.as_str())
}

/// What a field holds and an example of it, for fixes. Ranges and examples come from the
/// model's constants, so a hint never drifts from what the audit accepts.
pub(crate) struct Hint {
    pub form: String,
    pub example: String,
}

/// "an integer in START..=END".
fn range<T: std::fmt::Display>(range: &RangeInclusive<T>) -> String {
    format!("an integer in {}..={}", range.start(), range.end())
}

/// The hint for a field, by its name.
pub(crate) fn hint(leaf: &str) -> Option<Hint> {
    let (form, example): (String, String) = match leaf {
        "global" => (
            "a table".into(),
            "[global] with interface = \"eth0\"".into(),
        ),
        "interface" => (
            "a network interface's name as a string".into(),
            "interface = \"eth0\"".into(),
        ),
        "xdp_mode" => (
            "\"native\", \"generic\" or \"auto\"".into(),
            "xdp_mode = \"native\"".into(),
        ),
        "flow_table_size" => (
            range(&FLOW_TABLE_SIZE_RANGE),
            format!("flow_table_size = {DEFAULT_FLOW_TABLE_SIZE}"),
        ),
        "flow_admission" => (
            "\"protect\", \"first_ack\" or \"syn\"".into(),
            "flow_admission = \"protect\"".into(),
        ),
        "pin_path" => (
            format!("an absolute path under {BPFFS_ROOT}"),
            format!("pin_path = \"{DEFAULT_PIN_PATH}\""),
        ),
        "metrics_address" => (
            "an IP address and port".into(),
            format!("metrics_address = \"{DEFAULT_METRICS_ADDRESS}\""),
        ),
        "mtu" => (range(&MTU_RANGE), format!("mtu = {DEFAULT_MTU}")),
        "ipip_source_v4" => (
            "an IPv4 address of this host, or a prefix the tunnels' sources spread over".into(),
            "ipip_source_v4 = \"198.18.0.2\" or \"198.18.0.0/24\"".into(),
        ),
        "ipip_source_v6" => (
            "an IPv6 address of this host, or a prefix the tunnels' sources spread over".into(),
            "ipip_source_v6 = \"2001:db8::2\" or \"2001:db8::/120\"".into(),
        ),
        "drain_timeout_seconds" => (
            format!(
                "seconds in {}..={} that a drained backend keeps its flows",
                DRAIN_TIMEOUT_SECONDS_RANGE.start(),
                DRAIN_TIMEOUT_SECONDS_RANGE.end()
            ),
            format!("drain_timeout_seconds = {DEFAULT_DRAIN_TIMEOUT_SECONDS}"),
        ),
        "audit" => (
            "a table".into(),
            format!("[audit] with max_backend_share = {DEFAULT_MAX_BACKEND_SHARE}"),
        ),
        "max_backend_share" => (
            "a number above 0 and at most 1".into(),
            format!("max_backend_share = {DEFAULT_MAX_BACKEND_SHARE}"),
        ),
        "min_backends" => (
            "a non-negative integer".into(),
            format!("min_backends = {DEFAULT_MIN_BACKENDS}"),
        ),
        "alerts" => (
            "a table".into(),
            format!("[alerts] with window_seconds = {DEFAULT_ALERT_WINDOW_SECONDS}"),
        ),
        "window_seconds" => (
            format!(
                "seconds in {}..={}",
                ALERT_WINDOW_SECONDS_RANGE.start(),
                ALERT_WINDOW_SECONDS_RANGE.end()
            ),
            format!("window_seconds = {DEFAULT_ALERT_WINDOW_SECONDS}"),
        ),
        "skew_factor" => (
            "a number above 1".into(),
            format!("skew_factor = {DEFAULT_SKEW_FACTOR}"),
        ),
        "max_share" => (
            "a number above 0 and at most 1".into(),
            format!("max_share = {DEFAULT_MAX_SHARE}"),
        ),
        "min_healthy" => (
            format!("a count of at least {}", MIN_HEALTHY_RANGE.start()),
            format!("min_healthy = {DEFAULT_MIN_HEALTHY}"),
        ),
        "min_new_flows" => (
            "a non-negative count of flows".into(),
            format!("min_new_flows = {DEFAULT_MIN_NEW_FLOWS}"),
        ),
        "flood_factor" => (
            "a number above 1".into(),
            format!("flood_factor = {DEFAULT_FLOOD_FACTOR}"),
        ),
        "flood_min_rate" => (
            "a non-negative number of new flows per second".into(),
            format!("flood_min_rate = {DEFAULT_FLOOD_MIN_RATE}"),
        ),
        "max_evicted_proven" => (
            "a non-negative count of flows".into(),
            format!("max_evicted_proven = {DEFAULT_MAX_EVICTED_PROVEN}"),
        ),
        "command" => (
            "a shell command as a string, run with sh -c".into(),
            r#"command = 'logger -t xlb "$XLB_ALERT_MESSAGE"'"#.into(),
        ),
        "vip" => (
            "one [[vip]] table per VIP".into(),
            "[[vip]] with name, address, port, protocol".into(),
        ),
        "name" => (
            "lowercase letters, digits and '-' as a string".into(),
            "name = \"web\"".into(),
        ),
        "address" => (
            "an IPv4 or IPv6 address as a string".into(),
            "address = \"198.18.1.10\"".into(),
        ),
        "port" => (
            format!("{} (0: every port)", range(&(0..=u16::MAX))),
            "port = 80".into(),
        ),
        "protocol" => ("\"tcp\" or \"udp\"".into(), "protocol = \"tcp\"".into()),
        "forwarding" => ("\"dsr\" or \"ipip\"".into(), "forwarding = \"dsr\"".into()),
        "hash" => (
            "\"5-tuple\" or \"source\"".into(),
            "hash = \"5-tuple\"".into(),
        ),
        "table_size" => (
            format!("a prime, at least {SLOTS_PER_BACKEND} per backend"),
            format!("table_size = {DEFAULT_TABLE_SIZE}"),
        ),
        "backend" => (
            "one [[vip.backend]] table per backend".into(),
            "[[vip.backend]] with address, mac".into(),
        ),
        "weight" => (
            format!("{} (0 drains)", range(&(0..=u32::MAX))),
            format!("weight = {DEFAULT_WEIGHT}"),
        ),
        "mac" => (
            "six hex bytes separated by colons".into(),
            "mac = \"02:00:00:00:01:00\"".into(),
        ),
        "health" => (
            "a table".into(),
            "[vip.backend.health] with check = \"tcp\"".into(),
        ),
        "check" => ("\"tcp\" or \"http\"".into(), "check = \"tcp\"".into()),
        "path" => (
            "an HTTP path starting with / as a string".into(),
            "path = \"/healthz\"".into(),
        ),
        "expect_status" => (
            format!(
                "an HTTP status in {}..={}",
                HTTP_STATUS_RANGE.start(),
                HTTP_STATUS_RANGE.end()
            ),
            format!("expect_status = {DEFAULT_EXPECT_STATUS}"),
        ),
        "interval_ms" => (
            "milliseconds between probes".into(),
            format!("interval_ms = {DEFAULT_INTERVAL_MS}"),
        ),
        "timeout_ms" => (
            "milliseconds, below interval_ms".into(),
            format!("timeout_ms = {DEFAULT_TIMEOUT_MS}"),
        ),
        "rise" => (
            "a count of at least 1".into(),
            format!("rise = {DEFAULT_RISE}"),
        ),
        "fall" => (
            "a count of at least 1".into(),
            format!("fall = {DEFAULT_FALL}"),
        ),
        _ => return None,
    };
    Some(Hint { form, example })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_type_names_read_as_english() {
        // Test the names of found values in "must be X, not Y" messages.
        assert_eq!(found_name("map"), "a table");
        assert_eq!(found_name("integer `3`"), "the integer 3");
        assert_eq!(found_name("floating point `1500.5`"), "the float 1500.5");
        assert_eq!(found_name("string \"80\""), "the string \"80\"");
        assert_eq!(found_name("boolean `true`"), "the boolean true");
    }

    #[test]
    fn closest_accepts_up_to_two_edits_in_any_case() {
        // Test the distance behind "did you mean": two edits or a change of case still match,
        // the nearest name wins, three edits do not.
        let allowed = ["weight", "mtu", "backend"].map(String::from);
        assert_eq!(closest("weigth", &allowed), Some("weight"));
        assert_eq!(closest("MTU", &allowed), Some("mtu"));
        assert_eq!(closest("backends", &allowed), Some("backend"));
        assert_eq!(closest("abc", &allowed), None);
    }

    #[test]
    fn expected_lists_are_split_in_both_serde_forms() {
        // Test that both "one of `a`, `b`" and "`a` or `b`" yield the allowed names.
        let (value, allowed) =
            split_expected("`nativ`, expected one of `native`, `generic`, `auto`");
        assert_eq!(value, "nativ");
        assert_eq!(allowed, ["native", "generic", "auto"]);
        let (value, allowed) = split_expected("`x`, expected `check` or `port`");
        assert_eq!(value, "x");
        assert_eq!(allowed, ["check", "port"]);
    }
}
