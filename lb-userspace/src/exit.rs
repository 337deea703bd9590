//! Exit codes of the `xlb` verbs, the same for every verb so scripts can rely on them.

/// Success: the verb did what it was asked; for `validate` the config is valid (warnings
/// allowed unless `--strict`), for `audit` no drift was found.
pub const OK: u8 = 0;
/// A check found problems: the config is invalid (errors, or warnings under `--strict`), or
/// `audit` found drift.
pub const INVALID: u8 = 1;
/// The config file cannot be read (missing, no permission, not UTF-8).
pub const UNREADABLE: u8 = 2;
/// No xlb is running where the verb looked (no pins), or the caller may not read them (needs
/// root, or CAP_BPF and CAP_NET_ADMIN).
pub const NOT_LOADED: u8 = 3;
/// The verb failed for another reason; the message says why. State changes are all or
/// nothing, so nothing changed.
pub const FAILED: u8 = 4;

/// An error meaning [`NOT_LOADED`].
#[derive(Debug)]
pub struct NotLoaded(pub String);

impl std::fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotLoaded {}

/// The exit code for a verb's error.
pub fn code_of(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<NotLoaded>()) {
        NOT_LOADED
    } else {
        FAILED
    }
}
