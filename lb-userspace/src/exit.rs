//! Exit codes of the `xlb` verbs, the same for every verb so scripts can rely on them.

/// Success: for `validate`, the config is valid (warnings allowed unless `--strict`).
pub const OK: u8 = 0;
/// The config is invalid: it has errors, or warnings under `--strict`. Also the code of a verb
/// that failed for another reason (the process's generic failure).
pub const INVALID: u8 = 1;
/// The config file cannot be read (missing, no permission, not UTF-8).
pub const UNREADABLE: u8 = 2;
