//! The xlb config file: reading it, finding every mistake in it (each with its file, line,
//! field and fix), and the typed model the rest of xlb programs the kernel from.
//!
//! A config goes through three steps: `syntax` parses the TOML into the spanned `file` types
//! (any failure is XLB000 and stops there); `audit` checks the values against each other and
//! the host (XLB001..); only a config without errors becomes a `Model`.

mod audit;
mod diagnostic;
mod environment;
mod file;
mod model;
pub mod rules;
mod syntax;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use diagnostic::{Diagnostic, Rule, Severity};
pub use environment::{Environment, FixedEnvironment, HostEnvironment};
pub use model::{
    Alerts, AuditThresholds, BackendModel, Bgp, CheckKind, FlowAdmission, Forwarding, Global,
    HashMode, HealthCheck, Model, Protocol, Reload, VipModel, kernel_address,
};

use diagnostic::Source;

/// Ok: the model and any warnings. Err: at least one error, and any warnings; errors first,
/// each group in file order.
pub type Checked = Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>>;

/// Reads and validates the config at `path`. A file that cannot be read is one
/// [`rules::UNREADABLE_FILE`] error.
pub fn load(path: &Path, env: &dyn Environment) -> Checked {
    let text = read(path)?;
    check_text(&text, path, env)
}

/// Validates config text; `file` is the name diagnostics give it.
pub fn check_text(text: &str, file: &Path, env: &dyn Environment) -> Checked {
    check_text_overriding(text, file, env, &[])
}

/// Audit rules an operator may override (`xlb apply --override RULE`): they judge the
/// balance of a config, not whether it can be loaded, so a drill can force such a config live.
pub const OVERRIDABLE: [&str; 6] = ["XLB001", "XLB002", "XLB003", "XLB008", "XLB026", "XLB027"];

/// Like [`load`], with the findings of the `overrides` rules (only [`OVERRIDABLE`] ones)
/// turned into warnings that say they were overridden.
pub fn load_overriding(path: &Path, env: &dyn Environment, overrides: &[String]) -> Checked {
    let text = read(path)?;
    check_text_overriding(&text, path, env, overrides)
}

fn check_text_overriding(
    text: &str,
    file: &Path,
    env: &dyn Environment,
    overrides: &[String],
) -> Checked {
    let source = Source::new(text, file);
    let parsed = syntax::parse(&source)?;
    let mut diagnostics = audit::audit(&parsed, &source, env);
    for diagnostic in &mut diagnostics {
        if OVERRIDABLE.contains(&diagnostic.rule) && overrides.iter().any(|o| o == diagnostic.rule)
        {
            diagnostic.severity = Severity::Warning;
            diagnostic.message = format!(
                "{} (overridden with --override {})",
                diagnostic.message, diagnostic.rule
            );
        }
    }
    diagnostics.sort_by_key(|d| (d.severity, d.line, d.column));
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    match model::build(&parsed) {
        Some(model) => Ok((model, diagnostics)),
        // The audit reports every value `build` cannot convert, so this is a bug in xlb; still,
        // refuse the config rather than guess.
        None => Err(vec![source.diagnostic(
            &rules::SYNTAX,
            0..0,
            "",
            "the config passed the audit but could not be converted: this is a bug in xlb",
            "please report it with this config file",
        )]),
    }
}

/// Whether `diagnostics` say the file could not be read at all (exit code 2, not 1).
pub fn unreadable(diagnostics: &[Diagnostic]) -> bool {
    diagnostics
        .iter()
        .any(|d| d.rule == rules::UNREADABLE_FILE.id)
}

/// The largest config file xlb reads.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// The bytes of the config file at `path`: a regular file of at most [`MAX_FILE_BYTES`]. A
/// FIFO, socket or device is refused before anything is read from it (opening does not block:
/// O_NONBLOCK), and a file that grows while being read stops at the limit.
pub fn read_bytes(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(Error::new(ErrorKind::IsADirectory, "it is a directory"));
    }
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "not a regular file (a FIFO, socket or device)",
        ));
    }
    let too_large = || {
        Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "larger than the {} MiB a config may be",
                MAX_FILE_BYTES >> 20
            ),
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Validates the config `bytes`, read from `file`: the daemon reads a file once and applies (and
/// hashes) exactly the bytes it checked.
pub fn check_bytes(bytes: &[u8], file: &Path, env: &dyn Environment) -> Checked {
    check_bytes_overriding(bytes, file, env, &[])
}

/// Like [`check_bytes`], with the findings of the `overrides` rules as warnings (see
/// [`load_overriding`]).
pub fn check_bytes_overriding(
    bytes: &[u8],
    file: &Path,
    env: &dyn Environment,
    overrides: &[String],
) -> Checked {
    let text = std::str::from_utf8(bytes).map_err(|err| {
        read_error(
            file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, err),
        )
    })?;
    check_text_overriding(text, file, env, overrides)
}

/// The text of the config file, or one [`rules::UNREADABLE_FILE`] error naming the path and the
/// OS error (in a `Vec`, as `load` reports it).
pub fn read(path: &Path) -> Result<String, Vec<Diagnostic>> {
    read_bytes(path)
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8")
            })
        })
        .map_err(|err| read_error(path, err))
}

/// One [`rules::UNREADABLE_FILE`] error for `err` on `path`.
pub fn read_error(path: &Path, err: std::io::Error) -> Vec<Diagnostic> {
    let fix = match err.kind() {
        std::io::ErrorKind::NotFound => {
            "check the path (a relative path starts from the \
                                             current directory)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "run as a user who may read the file, or change its permissions"
        }
        std::io::ErrorKind::InvalidData => "save the file as UTF-8 text",
        std::io::ErrorKind::IsADirectory => "name the config file, not its directory",
        std::io::ErrorKind::FileTooLarge => "name the config file: this is too large to be one",
        std::io::ErrorKind::InvalidInput => "name a regular file, not a FIFO, socket or device",
        _ => "check that the path names a readable file",
    };
    vec![Diagnostic {
        rule: rules::UNREADABLE_FILE.id,
        name: rules::UNREADABLE_FILE.name,
        severity: rules::UNREADABLE_FILE.severity,
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read {}: {err}", path.display()),
        fix: fix.to_owned(),
    }]
}
