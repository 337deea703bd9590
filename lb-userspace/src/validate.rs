//! `xlb validate`: check a config file and report every finding, errors first.

use std::path::Path;

use serde::Serialize;

use crate::capacity::{Capacity, Memory};
use crate::config::{self, Diagnostic, Environment};
use crate::exit;

/// What `xlb validate` found in a config file, and the code it exits with. As JSON:
/// `{"ok", "exit_code", "file", "strict", "errors", "warnings", "diagnostics": [...],
/// "capacity"}`, each diagnostic with all its fields; `capacity` (with its `memory` in bytes)
/// is null for an invalid config.
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub ok: bool,
    pub exit_code: u8,
    pub file: String,
    pub strict: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
    pub capacity: Option<Loaded>,
}

/// The capacity `xlb run` loads for a valid config, and the memory it takes on this host.
#[derive(Clone, Debug, Serialize)]
pub struct Loaded {
    #[serde(flatten)]
    pub capacity: Capacity,
    pub memory: Memory,
}

/// Validates the config at `path` against `env`; with `strict`, warnings fail it too.
pub fn check(path: &Path, env: &dyn Environment, strict: bool) -> Validation {
    let (diagnostics, capacity) = match config::load(path, env) {
        Ok(loaded) => (loaded.warnings, Some(loaded.model.capacity)),
        Err(rejected) => (rejected.diagnostics, None),
    };
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let exit_code = if config::unreadable(&diagnostics) {
        exit::UNREADABLE
    } else if errors > 0 || (strict && warnings > 0) {
        exit::INVALID
    } else {
        exit::OK
    };
    Validation {
        ok: exit_code == exit::OK,
        exit_code,
        file: path.to_string_lossy().into_owned(),
        strict,
        errors,
        warnings,
        diagnostics,
        capacity: capacity.map(|capacity| Loaded {
            capacity,
            memory: capacity.memory_here(),
        }),
    }
}

impl Validation {
    /// Each diagnostic as a compiler renders it (`config` sorts errors first), then a summary
    /// line and, for a valid config, the capacity `xlb run` loads and the memory it takes.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for diagnostic in &self.diagnostics {
            out.push_str(&format!("{diagnostic}\n"));
            if !diagnostic.snippet.is_empty() {
                out.push_str(&format!("{}\n", diagnostic.snippet));
            }
        }
        if self.exit_code == exit::UNREADABLE {
            return out;
        }
        out.push_str(&format!(
            "{}: {}, {}",
            self.file,
            plural(self.errors, "error"),
            plural(self.warnings, "warning")
        ));
        if self.errors == 0 && self.warnings > 0 && self.strict {
            out.push_str(" (rejected: --strict treats warnings as errors)");
        }
        out.push('\n');
        if let Some(loaded) = &self.capacity {
            out.push_str(&format!(
                "capacity: {}: {}\n",
                loaded.capacity, loaded.memory
            ));
        }
        out
    }
}

/// `n word` or `n words`: the count in a report's summary line (validate, plan, audit).
pub fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{FixedEnvironment, test_texts::TWO_BACKENDS};

    fn corpus(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/configs")
            .join(name)
    }

    fn env() -> FixedEnvironment {
        FixedEnvironment::new(&["lo", "eth0"])
    }

    #[test]
    fn json_output_has_ok_counts_and_every_diagnostic_field() {
        // Test the shape of `--output json` for a config with an error.
        let path = corpus("bad/all-weight-on-one.toml");
        let report = check(&path, &env(), false);
        assert_eq!(report.exit_code, exit::INVALID);
        let document = serde_json::to_value(&report).expect("JSON");
        assert_eq!(document["ok"], false);
        assert_eq!(document["errors"], 1);
        assert_eq!(document["file"], path.to_string_lossy().as_ref());
        let diagnostics = document["diagnostics"].as_array().expect("array");
        let first = &diagnostics[0];
        for key in [
            "rule", "name", "severity", "file", "line", "column", "field", "message", "fix",
        ] {
            assert!(first.get(key).is_some(), "diagnostic lacks {key}: {first}");
        }
        assert_eq!(first["rule"], "XLB003");
        assert_eq!(first["name"], "all-on-one-server");
        assert_eq!(first["severity"], "error");
        assert!(first["line"].as_u64().expect("line") > 0);
    }

    #[test]
    fn json_output_of_a_valid_config_is_ok_with_no_diagnostics() {
        // Test that a clean config is `ok: true` with an empty list and exit code 0.
        let report = check(&corpus("good/minimal.toml"), &env(), true);
        assert_eq!(report.exit_code, exit::OK);
        let document = serde_json::to_value(&report).expect("JSON");
        assert_eq!(document["ok"], true);
        assert_eq!(document["diagnostics"], serde_json::json!([]));
    }

    #[test]
    fn strict_rejects_warnings() {
        // Test that warnings pass by default and fail under --strict, in both outputs.
        let path = corpus("bad/single-backend.toml");
        let lenient = check(&path, &env(), false);
        assert_eq!(lenient.exit_code, exit::OK, "{}", lenient.text());
        let strict = check(&path, &env(), true);
        assert_eq!(strict.exit_code, exit::INVALID);
        let document = serde_json::to_value(&strict).expect("JSON");
        assert_eq!(document["ok"], false);
        assert_eq!(document["warnings"], 1);
    }

    #[test]
    fn text_output_puts_errors_first_and_ends_with_a_summary() {
        // Test the text rendering: errors before warnings, each with a fix line, then counts.
        // The corpus holds one mistake per file, so this config (the corpus's warning on the
        // first VIP, an error on a second one) is put together here.
        let warning = std::fs::read_to_string(corpus("bad/single-backend.toml")).expect("corpus");
        let error = TWO_BACKENDS
            .replace("name = \"web\"", "name = \"api\"")
            .replace("port = 80\n", "port = 443\ntable_size = 1000\n");
        let text = format!("{warning}\n{error}");
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("xlb.toml");
        std::fs::write(&path, text).expect("temporary config");
        let report = check(&path, &env(), false);
        assert_eq!(report.exit_code, exit::INVALID);
        let text = report.text();
        let lines: Vec<&str> = text.lines().collect();
        let first_warning = lines.iter().position(|l| l.contains(": warning["));
        let last_error = lines.iter().rposition(|l| l.contains(": error["));
        assert!(first_warning.expect("a warning") > last_error.expect("an error"));
        assert!(lines.iter().any(|l| l.starts_with("  fix: ")));
        let summary = lines.last().expect("summary");
        assert!(
            summary.starts_with(&format!("{}: ", path.display())),
            "{summary}"
        );
        assert!(
            summary.contains("error") && summary.contains("warning"),
            "{summary}"
        );
    }

    #[test]
    fn unreadable_file_exits_2_naming_path_and_os_error() {
        // Test that a missing file is exit code 2 with the path and the OS error in the message.
        let path = corpus("no-such-file.toml");
        let report = check(&path, &env(), false);
        assert_eq!(report.exit_code, exit::UNREADABLE);
        assert!(
            report.text().contains(&path.display().to_string()),
            "{}",
            report.text()
        );
        assert!(
            report.text().contains("No such file or directory"),
            "{}",
            report.text()
        );
    }
}
