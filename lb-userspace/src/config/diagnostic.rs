//! Findings about a config file, where they are, and how they are shown.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde::Serialize;

/// Whether a finding rejects the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config is rejected: nothing of it reaches the kernel.
    Error,
    /// The config is accepted, but probably not what was meant (`--strict` rejects it).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One check xlb makes: its stable id, its name and how serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `XLB000`..: stable, for documentation, scripts and `explain`.
    pub id: &'static str,
    /// Short kebab-case name, e.g. `single-backend`.
    pub name: &'static str,
    pub severity: Severity,
    /// One sentence on what the rule catches and why it matters.
    pub summary: &'static str,
}

/// One finding: which rule, where (file, 1-based line and column, field path), what is wrong
/// and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub rule: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    #[serde(serialize_with = "serialize_path")]
    pub file: PathBuf,
    /// 1-based; 0 when the finding is about the file as a whole (it could not be read).
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Path of the field in the config, e.g. `vip[0].backend[2].weight`.
    pub field: String,
    pub message: String,
    pub fix: String,
    /// The source line the finding points at, with a caret under the value, as rustc shows
    /// it; empty when the finding has no place in the file. Text output only.
    #[serde(skip)]
    pub snippet: String,
}

fn serialize_path<S: serde::Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Rendered like a compiler's message, with the fix on an indented second line:
///
/// ```text
/// xlb.toml:14:11: error[XLB005 duplicate-backend]: backend 198.18.0.10 appears twice in vip "web" (vip[0].backend[2].address)
///   fix: remove one of the entries or merge their weights
/// ```
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(
            f,
            ": {}[{} {}]: {}",
            self.severity, self.rule, self.name, self.message
        )?;
        if !self.field.is_empty() {
            write!(f, " ({})", self.field)?;
        }
        write!(f, "\n  fix: {}", self.fix)
    }
}

/// The text of a config file and its name, to turn byte spans into diagnostics.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a Path,
    /// Byte offset of the start of every line, found when a finding first needs a position:
    /// a valid config of 400,000 lines needs none.
    line_starts: OnceLock<Vec<usize>>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, file: &'a Path) -> Self {
        Source {
            text,
            file,
            line_starts: OnceLock::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(memchr::memchr_iter(b'\n', self.text.as_bytes()).map(|at| at + 1))
                .collect()
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let starts = self.line_starts();
        let line = starts.partition_point(|&start| start <= offset) - 1;
        let start = starts[line];
        // A span never starts inside a character, but be safe on odd offsets.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line + 1, column + 1)
    }

    /// The line of `span`'s start with a caret under the span (up to that line's end) and
    /// `label` beside it, as annotate-snippets renders it; empty for an empty span.
    fn snippet(&self, severity: Severity, span: &Range<usize>, label: &str) -> String {
        let start = span.start;
        if span.is_empty() || !self.text.is_char_boundary(start) {
            return String::new();
        }
        let (line, _) = self.position(start);
        let line_start = self.line_starts()[line - 1];
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |at| start + at);
        // A span over several lines (a whole table) is marked on its first line.
        let end = span.end.min(line_end);
        let source = &self.text[line_start..line_end];
        let level = match severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let annotation = AnnotationKind::Primary
            .span(start - line_start..end - line_start)
            .label(label);
        let report = [Group::with_level(level).element(
            Snippet::source(source)
                .line_start(line)
                .annotation(annotation),
        )];
        Renderer::plain().render(&report)
    }

    /// A finding of `rule` at `span`.
    pub fn diagnostic(
        &self,
        rule: &Rule,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        let field = field.into();
        let snippet = self.snippet(rule.severity, &span, &field);
        Diagnostic {
            rule: rule.id,
            name: rule.name,
            severity: rule.severity,
            file: self.file.to_path_buf(),
            line,
            column,
            field,
            message: message.into(),
            fix: fix.into(),
            snippet,
        }
    }

    /// `diagnostic`, found at a span of the same text elsewhere, placed at `span` of this
    /// source: its file, line, column and snippet.
    pub fn placed(&self, diagnostic: &Diagnostic, span: Range<usize>) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            column,
            snippet: self.snippet(diagnostic.severity, &span, &diagnostic.field),
            ..diagnostic.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        // Test that lines and columns start at 1 and that a multi-byte character is one column.
        let source = Source::new("a = 1\n# é\nb = 2\n", Path::new("x.toml"));
        assert_eq!(source.position(0), (1, 1));
        assert_eq!(source.position(4), (1, 5));
        assert_eq!(source.position(6), (2, 1));
        // "# é" is 4 bytes; 'b' of line 3 starts after its newline.
        assert_eq!(source.position(11), (3, 1));
        assert_eq!(source.position(10), (2, 4));
    }

    #[test]
    fn snippets_show_the_line_with_a_caret_under_the_value() {
        // Test that a finding shows its source line, numbered, with carets under exactly the
        // span on that line (a span over several lines is cut at the first line's end), and
        // that a finding without a place has no snippet.
        let text = "[global]\nmtu = 99999\n[audit]\nx = 1\n";
        let source = Source::new(text, Path::new("x.toml"));
        let rule = crate::config::rules::BAD_GLOBAL;
        let at = text.find("99999").unwrap();
        let found = source.diagnostic(&rule, at..at + 5, "global.mtu", "m", "f");
        let lines: Vec<&str> = found.snippet.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with("2 | mtu = 99999")),
            "{lines:?}"
        );
        let caret = lines
            .iter()
            .find(|l| l.contains('^'))
            .expect("a caret line");
        assert_eq!(caret.find('^'), Some("2 | mtu = ".len()), "{caret}");
        assert!(caret.contains("^^^^^ global.mtu"), "{caret}");
        let table = source.diagnostic(&rule, 0..text.len(), "global", "m", "f");
        assert!(!table.snippet.contains("mtu"), "{}", table.snippet);
        assert!(
            source
                .diagnostic(&rule, 0..0, "", "m", "f")
                .snippet
                .is_empty()
        );
    }
}
