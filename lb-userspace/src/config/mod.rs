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
mod reparse;
pub mod rules;
mod shift;
mod syntax;
#[cfg(test)]
pub(crate) mod test_texts;
#[cfg(test)]
mod tests;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

pub use diagnostic::{Diagnostic, Rule, Severity};
pub use environment::{Environment, FixedEnvironment, HostEnvironment};
pub use model::{
    Alerts, AuditThresholds, BackendModel, Bgp, CheckKind, FlowAdmission, Forwarding, Global,
    HashMode, HealthCheck, Model, Protocol, Reload, VipModel,
};

pub use audit::CheckedVips;
use diagnostic::Source;
pub use reparse::Reparse;

use crate::diff::effect::KnownCounts;

/// A config file's text as it was read, once, and checked: what every verb hashes and shows,
/// so none reads the file again (it may have changed in between).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigText {
    pub path: PathBuf,
    /// Shared, not copied, with the [`Reparse`] that parsed it and the daemon that keeps it
    /// (10 MB at 1,000 VIPs).
    pub text: Arc<str>,
    /// [`hash`] of the text: the `config_hash` an apply records in the meta map.
    pub hash: u64,
}

impl ConfigText {
    pub fn new(path: &Path, text: Arc<str>) -> Self {
        ConfigText {
            path: path.to_path_buf(),
            hash: hash(text.as_bytes()),
            text,
        }
    }
}

/// Identifies a config file's contents: XXH3-64 over its bytes (a 10 MB config hashes in
/// about a millisecond; FNV-1a, a byte at a time, took ten).
pub fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A config without errors: its model, its warnings (in file order) and the text it was built
/// from.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub model: Model,
    pub warnings: Vec<Diagnostic>,
    pub text: ConfigText,
    /// The slot counts of the tables its VIPs were judged on: a later check of the file, once
    /// changed, builds only the tables of the VIPs the change touches (see [`check_parsed`]).
    pub counts: KnownCounts,
}

/// A config file's text with its TOML parsed: the first step of a check (see [`check_parsed`]).
#[derive(Debug)]
pub struct Parsed {
    text: ConfigText,
    file: file::ConfigFile,
}

impl Parsed {
    /// The pin path the file names (`global.pin_path`, not yet checked), else the default.
    pub fn pin_path(&self) -> PathBuf {
        let named = self.file.global.get_ref().pin_path.as_ref();
        PathBuf::from(named.map_or(model::DEFAULT_PIN_PATH, |path| path.get_ref()))
    }
}

/// A config with at least one error: every finding, errors first, each group in file order;
/// and its text, unless it could not be read.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub diagnostics: Vec<Diagnostic>,
    pub text: Option<ConfigText>,
}

impl Rejected {
    /// Whether the file could not be read at all (exit code 2, not 1).
    pub fn unreadable(&self) -> bool {
        unreadable(&self.diagnostics)
    }
}

pub type Checked = Result<Loaded, Rejected>;

/// Reads and validates the config at `path`. A file that cannot be read is one
/// [`rules::UNREADABLE_FILE`] error.
pub fn load(path: &Path, env: &dyn Environment) -> Checked {
    load_overriding(path, env, &[])
}

/// Validates config text; `file` is the name diagnostics give it.
pub fn check_text(text: &str, file: &Path, env: &dyn Environment) -> Checked {
    check_parsed(parse(text, file)?, env, &[], &KnownCounts::default())
}

/// Audit rules an operator may override (`xlb apply --override RULE`): they judge the
/// balance of a config, not whether it can be loaded, so a drill can force such a config live.
pub const OVERRIDABLE: [&str; 6] = ["XLB001", "XLB002", "XLB003", "XLB008", "XLB026", "XLB027"];

/// Like [`load`], with the findings of the `overrides` rules (only [`OVERRIDABLE`] ones)
/// turned into warnings that say they were overridden.
pub fn load_overriding(path: &Path, env: &dyn Environment, overrides: &[String]) -> Checked {
    let bytes = read_bytes(path).map_err(|err| unreadable_file(path, err))?;
    check_bytes_overriding(&bytes, path, env, overrides)
}

/// What the next check of a file, once changed, can take from the last: the VIPs parsed (see
/// [`parse_bytes_reusing`]) and what was found for each (see [`check_parsed_reusing`]).
#[derive(Debug, Default)]
pub struct Recheck {
    pub reparse: Reparse,
    pub vips: CheckedVips,
}

/// [`load`], keeping in `recheck` what a check of the file once changed can reuse.
pub fn load_reusing(path: &Path, env: &dyn Environment, recheck: &mut Recheck) -> Checked {
    let bytes = read_bytes(path).map_err(|err| unreadable_file(path, err))?;
    let parsed = parse_bytes_reusing(&bytes, path, &mut recheck.reparse)?;
    check_parsed_reusing(parsed, env, &[], &KnownCounts::default(), recheck)
}

/// The config `text`, read from `file`, parsed: every syntax error, or its [`Parsed`] form.
pub fn parse(text: &str, file: &Path) -> Result<Parsed, Rejected> {
    parse_with(ConfigText::new(file, text.into()), |source, _| {
        syntax::parse(source)
    })
}

/// `text` parsed through `parse`, one of the parsers in `syntax`, given the text twice: to
/// read (with the file's name, for diagnostics) and to keep.
fn parse_with(
    text: ConfigText,
    parse: impl FnOnce(&Source<'_>, &Arc<str>) -> Result<file::ConfigFile, Vec<Diagnostic>>,
) -> Result<Parsed, Rejected> {
    match parse(&Source::new(&text.text, &text.path), &text.text) {
        Ok(parsed) => Ok(Parsed { text, file: parsed }),
        Err(diagnostics) => Err(Rejected {
            diagnostics,
            text: Some(text),
        }),
    }
}

/// Checks a parsed config, with the findings of the `overrides` rules (only [`OVERRIDABLE`]
/// ones) turned into warnings that say they were overridden. A VIP's table is counted from
/// `known` when it holds the same inputs (the daemon keeps the counts of the config it runs;
/// `audit` takes them from the live tables their records vouch for), else built: the findings
/// are the same either way.
pub fn check_parsed(
    parsed: Parsed,
    env: &dyn Environment,
    overrides: &[String],
    known: &KnownCounts,
) -> Checked {
    check_parsed_with(parsed, env, overrides, known, None)
}

/// [`check_parsed`] of a file `last`'s reparse parsed, taking from `last` what the last check
/// found for each VIP the reparse took again and keeping there what this one finds: the
/// daemon's check of a change to one VIP among thousands checks that VIP. The findings are
/// those of [`check_parsed`].
pub fn check_parsed_reusing(
    parsed: Parsed,
    env: &dyn Environment,
    overrides: &[String],
    known: &KnownCounts,
    last: &mut Recheck,
) -> Checked {
    check_parsed_with(parsed, env, overrides, known, Some(last))
}

fn check_parsed_with(
    parsed: Parsed,
    env: &dyn Environment,
    overrides: &[String],
    known: &KnownCounts,
    last: Option<&mut Recheck>,
) -> Checked {
    let Parsed { text, file } = parsed;
    let source = Source::new(&text.text, &text.path);
    let (model, mut diagnostics, counts) = audit::check(&file, &source, env, known, last);
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
        return Err(Rejected {
            diagnostics,
            text: Some(text),
        });
    }
    match model {
        Some(model) => Ok(Loaded {
            model,
            warnings: diagnostics,
            text,
            counts,
        }),
        // Every value without a model form is an error, so this is a bug in xlb; still, refuse
        // the config rather than guess.
        None => Err(Rejected {
            diagnostics: vec![source.diagnostic(
                &rules::SYNTAX,
                0..0,
                "",
                "the config passed the audit but could not be converted: this is a bug in xlb",
                "please report it with this config file",
            )],
            text: Some(text),
        }),
    }
}

/// The pin path the config `file` names (`global.pin_path`, else the default), read without
/// parsing or checking its VIPs: where `xlb apply` looks for the daemon of `file` when no
/// running daemon said it keeps it (one busy past the wait). `None` if the file cannot be read
/// or its tables outside the VIPs do not parse alone: a full check then says why.
pub fn named_pin_path(file: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Outside {
        global: Option<GlobalPinPath>,
    }
    #[derive(serde::Deserialize)]
    struct GlobalPinPath {
        pin_path: Option<PathBuf>,
    }
    let bytes = read_bytes(file).ok()?;
    let outside = reparse::outside_vips(std::str::from_utf8(&bytes).ok()?);
    let Outside { global } = toml::from_str(&outside).ok()?;
    Some(
        global
            .and_then(|global| global.pin_path)
            .unwrap_or_else(|| PathBuf::from(model::DEFAULT_PIN_PATH)),
    )
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

/// Validates the config `bytes`, read from `file`: the daemon reads a file (twice, until it
/// settles) and applies exactly the bytes it checked.
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
    check_parsed(
        parse_bytes(bytes, file)?,
        env,
        overrides,
        &KnownCounts::default(),
    )
}

/// The config `bytes`, read from `file`, parsed (see [`parse`]); bytes that are not UTF-8 are
/// an [`rules::UNREADABLE_FILE`] error.
pub fn parse_bytes(bytes: &[u8], file: &Path) -> Result<Parsed, Rejected> {
    parse(utf8(bytes, file)?, file)
}

/// [`parse_bytes`], parsing again only the VIPs that changed since the last text `reparse`
/// parsed (the daemon's reload of one VIP among thousands); the result and the diagnostics
/// are those of [`parse_bytes`].
pub fn parse_bytes_reusing(
    bytes: &[u8],
    file: &Path,
    reparse: &mut Reparse,
) -> Result<Parsed, Rejected> {
    // The one copy of the text: the checked file, `reparse` and the daemon share it.
    let text = ConfigText::new(file, utf8(bytes, file)?.into());
    parse_with(text, |source, text| {
        syntax::parse_reusing(source, text, reparse)
    })
}

/// `bytes` as text; bytes that are not UTF-8 are an [`rules::UNREADABLE_FILE`] error.
fn utf8<'b>(bytes: &'b [u8], file: &Path) -> Result<&'b str, Rejected> {
    std::str::from_utf8(bytes).map_err(|_| {
        unreadable_file(
            file,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is not UTF-8"),
        )
    })
}

/// The rejection of a file that cannot be read: one [`rules::UNREADABLE_FILE`] error naming
/// the path and the OS error.
pub fn unreadable_file(path: &Path, err: std::io::Error) -> Rejected {
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
    let diagnostic = Diagnostic {
        rule: rules::UNREADABLE_FILE.id,
        name: rules::UNREADABLE_FILE.name,
        severity: rules::UNREADABLE_FILE.severity,
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read {}: {err}", path.display()),
        fix: fix.to_owned(),
        snippet: String::new(),
    };
    Rejected {
        diagnostics: vec![diagnostic],
        text: None,
    }
}
