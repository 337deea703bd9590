//! Exit codes of the `xlb` verbs, the same for every verb so scripts can rely on them.

/// Success: the verb did what it was asked; for `validate` the config is valid (warnings
/// allowed unless `--strict`), for `audit` no drift was found.
pub const OK: u8 = 0;
/// A check found problems: the config is invalid (errors, or warnings under `--strict`), or
/// `audit` found drift.
pub const INVALID: u8 = 1;
/// The config file cannot be read (missing, no permission, not UTF-8, not a regular file, over
/// [`crate::config::MAX_FILE_BYTES`]), or the command line is wrong.
pub const UNREADABLE: u8 = 2;
/// No xlb is running where the verb looked (no pins), or the caller may not read them (needs
/// root, or CAP_BPF and CAP_NET_ADMIN).
pub const NOT_LOADED: u8 = 3;
/// The verb failed for another reason; the message says why. State changes are all or
/// nothing, so nothing changed.
pub const FAILED: u8 = 4;

/// An error meaning [`NOT_LOADED`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotLoaded(pub String);

/// An error with its exit code (e.g. the daemon's refusal, relayed).
#[derive(Debug, thiserror::Error)]
#[error("{1}")]
pub struct Coded(pub u8, pub String);

/// The exit code for a verb's error. A permission the kernel denied counts as missing
/// privilege ([`NOT_LOADED`]) in every verb.
pub fn code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| {
            if cause.is::<NotLoaded>() {
                Some(NOT_LOADED)
            } else if cause.is::<crate::backend::Refused>() {
                // A guard found a problem with the change: a check's finding.
                Some(INVALID)
            } else if let Some(Coded(code, _)) = cause.downcast_ref() {
                Some(*code)
            } else {
                cause
                    .downcast_ref::<std::io::Error>()
                    .filter(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
                    .map(|_| NOT_LOADED)
            }
        })
        .unwrap_or(FAILED)
}
