//! The systemd unit xlb ships (`packaging/xlb.service`), read as systemd reads its settings.

/// The unit file.
pub const UNIT: &str = include_str!("../../packaging/xlb.service");

/// The `key=value` settings of `section` (e.g. `[Service]`) in a unit file, comments skipped.
pub fn settings<'a>(unit: &'a str, section: &str) -> Vec<(&'a str, &'a str)> {
    let mut current = "";
    let mut settings = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            current = line;
        } else if current == section
            && let Some((key, value)) = line.split_once('=')
        {
            settings.push((key.trim(), value.trim()));
        }
    }
    settings
}

/// The value of `key` in the unit's `[Service]` section, if set (the last one wins).
pub fn service(key: &str) -> Option<&'static str> {
    settings(UNIT, "[Service]")
        .into_iter()
        .rev()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The capabilities the unit lets xlb keep (`CapabilityBoundingSet`), e.g. `CAP_BPF`.
pub fn bounding_set() -> Vec<&'static str> {
    service("CapabilityBoundingSet")
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}
