//! XLB000: turning TOML and serde errors into diagnostics that name the field, the allowed
//! values and the fix.
//!
//! toml reports an error as a message and a byte span but not the field it is in, so the field
//! path is found by locating the span in the document's spanned tree.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostic, Source};
use super::file::ConfigFile;
use super::rules::SYNTAX;

/// The file's typed form, or every syntax error (or the first shape error) in it.
pub(crate) fn parse(source: &Source<'_>) -> Result<ConfigFile, Vec<Diagnostic>> {
    let (tree, errors) = DeTable::parse_recoverable(source.text);
    let fields = index(&tree);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|error| diagnostic(source, &fields, error))
            .collect());
    }
    toml::from_str(source.text).map_err(|error| vec![diagnostic(source, &fields, &error)])
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

/// What a field holds and an example of it, for fixes.
pub(crate) struct Hint {
    pub form: &'static str,
    pub example: &'static str,
}

/// The hint for a field, by its name.
pub(crate) fn hint(leaf: &str) -> Option<Hint> {
    let (form, example) = match leaf {
        "global" => ("a table", "[global] with interface = \"eth0\""),
        "interface" => (
            "a network interface's name as a string",
            "interface = \"eth0\"",
        ),
        "xdp_mode" => (
            "\"native\", \"generic\" or \"auto\"",
            "xdp_mode = \"native\"",
        ),
        "flow_table_size" => ("an integer in 1..=16777216", "flow_table_size = 65536"),
        "flow_admission" => (
            "\"protect\", \"first_ack\" or \"syn\"",
            "flow_admission = \"protect\"",
        ),
        "pin_path" => (
            "an absolute path under /sys/fs/bpf",
            "pin_path = \"/sys/fs/bpf/xlb\"",
        ),
        "metrics_address" => (
            "an IP address and port",
            "metrics_address = \"127.0.0.1:9100\"",
        ),
        "mtu" => ("an integer in 576..=9216", "mtu = 1500"),
        "ipip_source_v4" => (
            "an IPv4 address of this host, or a prefix the tunnels' sources spread over",
            "ipip_source_v4 = \"198.18.0.2\" or \"198.18.0.0/24\"",
        ),
        "ipip_source_v6" => (
            "an IPv6 address of this host, or a prefix the tunnels' sources spread over",
            "ipip_source_v6 = \"2001:db8::2\" or \"2001:db8::/120\"",
        ),
        "drain_timeout_seconds" => (
            "seconds in 1..=86400 that a drained backend keeps its flows",
            "drain_timeout_seconds = 300",
        ),
        "audit" => ("a table", "[audit] with max_backend_share = 0.5"),
        "max_backend_share" => ("a number above 0 and at most 1", "max_backend_share = 0.5"),
        "min_backends" => ("a non-negative integer", "min_backends = 2"),
        "alerts" => ("a table", "[alerts] with window_seconds = 10"),
        "window_seconds" => ("seconds in 1..=3600", "window_seconds = 10"),
        "skew_factor" => ("a number above 1", "skew_factor = 1.5"),
        "max_share" => ("a number above 0 and at most 1", "max_share = 0.9"),
        "min_healthy" => ("a count of at least 1", "min_healthy = 1"),
        "min_new_flows" => ("a non-negative count of flows", "min_new_flows = 100"),
        "flood_factor" => ("a number above 1", "flood_factor = 10"),
        "flood_min_rate" => (
            "a non-negative number of new flows per second",
            "flood_min_rate = 1000",
        ),
        "max_evicted_proven" => ("a non-negative count of flows", "max_evicted_proven = 0"),
        "command" => (
            "a shell command as a string, run with sh -c",
            r#"command = 'logger -t xlb "$XLB_ALERT_MESSAGE"'"#,
        ),
        "vip" => (
            "one [[vip]] table per VIP",
            "[[vip]] with name, address, port, protocol",
        ),
        "name" => (
            "lowercase letters, digits and '-' as a string",
            "name = \"web\"",
        ),
        "address" => (
            "an IPv4 or IPv6 address as a string",
            "address = \"198.18.1.10\"",
        ),
        "port" => ("an integer in 0..=65535 (0: every port)", "port = 80"),
        "protocol" => ("\"tcp\" or \"udp\"", "protocol = \"tcp\""),
        "forwarding" => ("\"dsr\" or \"ipip\"", "forwarding = \"dsr\""),
        "hash" => ("\"5-tuple\" or \"source\"", "hash = \"5-tuple\""),
        "table_size" => ("a prime, at least 100 per backend", "table_size = 65537"),
        "backend" => (
            "one [[vip.backend]] table per backend",
            "[[vip.backend]] with address, mac",
        ),
        "weight" => ("an integer in 0..=4294967295 (0 drains)", "weight = 1"),
        "mac" => (
            "six hex bytes separated by colons",
            "mac = \"02:00:00:00:01:00\"",
        ),
        "health" => ("a table", "[vip.backend.health] with check = \"tcp\""),
        "check" => ("\"tcp\" or \"http\"", "check = \"tcp\""),
        "path" => (
            "an HTTP path starting with / as a string",
            "path = \"/healthz\"",
        ),
        "expect_status" => ("an HTTP status in 100..=599", "expect_status = 200"),
        "interval_ms" => ("milliseconds between probes", "interval_ms = 1000"),
        "timeout_ms" => ("milliseconds, below interval_ms", "timeout_ms = 500"),
        "rise" => ("a count of at least 1", "rise = 2"),
        "fall" => ("a count of at least 1", "fall = 3"),
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
