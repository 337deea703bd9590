//! Parsing a changed config again: only the `[[vip]]` tables whose text changed.
//!
//! The text is cut into pieces where a line opens a top-level `[[vip]]` table and where the
//! VIPs give way to another top-level table. Each piece is parsed on its own and its spans are
//! moved to where it sits in the file; each VIP's typed form is kept with its byte range and
//! text, so a reload that edits one VIP parses that VIP's piece and the few small pieces
//! outside the VIPs. A VIP whose text is the one at the same place before, or at the same
//! place counted from the last VIP (an edit that changes a VIP's length, or adds or removes
//! one, moves every VIP after it), is taken again, its spans moved by what it moved.
//!
//! The result is the full parse's or nothing: a piece that fails to parse, a VIP piece that is
//! not exactly one VIP, a key two pieces both define, or a `vip` key outside the VIP pieces
//! gives `None`, and the caller parses the whole text, so every diagnostic is the full
//! parse's. A cut inside a multi-line string, array or inline table leaves the piece before it
//! unterminated, so it fails to parse rather than being misread.

use std::{collections::HashMap, ops::Range, sync::Arc};

use serde::Deserialize;
use toml::{
    Spanned,
    de::{DeTable, DeValue, Deserializer},
};

use super::{
    file::{ConfigFile, VipFile},
    shift::{Shift, shifted},
};

/// The VIPs of the last text parsed, for the next parse to reuse.
#[derive(Debug, Default)]
pub struct Reparse {
    /// The last text parsed (shared with the file parsed from it); the ranges below are of it.
    text: Arc<str>,
    /// Each VIP piece's range and typed form, in file order: shared with the file parsed, so
    /// reusing a VIP in place copies none of it.
    vips: Vec<(Range<usize>, Arc<Spanned<VipFile>>)>,
    /// For each VIP of the last parse, the VIP of the parse before it that it was taken from.
    origins: Vec<Option<Origin>>,
    /// The VIP pieces the last parse parsed (the others it reused); `None` if it gave up.
    parsed: Option<usize>,
}

/// Where a VIP taken again was in the parse before: that parse's VIP (the same text), and how
/// many bytes it moved (0: in place, the same `Arc`).
#[derive(Clone, Debug)]
pub struct Origin {
    pub from: Arc<Spanned<VipFile>>,
    pub by: isize,
}

/// One `[[vip]]` table parsed alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VipPiece {
    vip: Vec<Spanned<VipFile>>,
}

/// A piece of the text: a VIP's table, or top-level tables and keys other than VIPs.
struct Piece {
    range: Range<usize>,
    vip: bool,
}

impl Reparse {
    /// `text` parsed, with the typed VIPs of the last text parsed whose piece is unchanged and
    /// where it was, or where it was counted from the end; `None` where only a parse of the
    /// whole text can tell (see the module).
    pub fn parse(&mut self, text: &Arc<str>) -> Option<ConfigFile> {
        let pieces = pieces(text);
        let count = pieces.iter().filter(|piece| piece.vip).count();
        let by_start: HashMap<usize, usize> = (self.vips.iter().enumerate())
            .map(|(j, (range, _))| (range.start, j))
            .collect();
        let mut root = DeTable::new();
        let (mut vips, mut kept, mut origins) = (Vec::new(), Vec::new(), Vec::new());
        let mut parsed = 0;
        self.parsed = None;
        for Piece { range, vip } in pieces {
            let piece = &text[range.clone()];
            if vip {
                let k = vips.len();
                let from_end = (k + self.vips.len()).checked_sub(count);
                let found = [by_start.get(&range.start).copied(), from_end]
                    .into_iter()
                    .flatten()
                    .find(|&j| {
                        self.vips
                            .get(j)
                            .is_some_and(|(old, _)| self.text.get(old.clone()) == Some(piece))
                    });
                let (vip, origin) = match found {
                    Some(j) => {
                        let (old, from) = &self.vips[j];
                        let by = range.start as isize - old.start as isize;
                        let vip = match by {
                            0 => Arc::clone(from),
                            _ => Arc::new(from.as_ref().clone().shift(by)),
                        };
                        let from = Arc::clone(from);
                        (vip, Some(Origin { from, by }))
                    }
                    None => {
                        parsed += 1;
                        (Arc::new(parse_vip(piece, range.start)?), None)
                    }
                };
                vips.push(Arc::clone(&vip));
                kept.push((range, vip));
                origins.push(origin);
                continue;
            }
            for (key, value) in moved_table(DeTable::parse(piece).ok()?.into_inner(), range.start) {
                if key.get_ref() == "vip" || root.insert(key, value).is_some() {
                    return None;
                }
            }
        }
        let mut file =
            ConfigFile::deserialize(Deserializer::from(Spanned::new(0..text.len(), root))).ok()?;
        file.vip = vips;
        self.text = Arc::clone(text);
        self.vips = kept;
        self.origins = origins;
        self.parsed = Some(parsed);
        Some(file)
    }

    /// How many VIPs the last parse parsed (it reused the others); `None` if it left the text
    /// to a parse of the whole.
    pub fn parsed(&self) -> Option<usize> {
        self.parsed
    }

    /// For each VIP of the last parse, where it was taken from (`None`: parsed); empty if the
    /// last parse left the text to a parse of the whole.
    pub fn origins(&self) -> &[Option<Origin>] {
        match self.parsed {
            Some(_) => &self.origins,
            None => &[],
        }
    }
}

/// The text of `text`'s pieces outside the VIPs, in order: the top-level tables and keys that
/// are not VIPs, without parsing the VIPs (`xlb apply` finds the pin path in it).
pub fn outside_vips(text: &str) -> String {
    pieces(text)
        .into_iter()
        .filter(|piece| !piece.vip)
        .map(|piece| &text[piece.range])
        .collect()
}

/// `text` cut before each line that opens a top-level `[[vip]]` table, and before the first
/// other table header after one.
fn pieces(text: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_vip = false;
    for (at, header) in headers(text) {
        let cut = if opens_vip(header) {
            Some(true)
        } else if in_vip && !header_under_vip(header) {
            Some(false)
        } else {
            None
        };
        if let Some(vip) = cut {
            if at > start {
                pieces.push(Piece {
                    range: start..at,
                    vip: in_vip,
                });
            }
            start = at;
            in_vip = vip;
        }
    }
    if text.len() > start || pieces.is_empty() {
        pieces.push(Piece {
            range: start..text.len(),
            vip: in_vip,
        });
    }
    pieces
}

/// Each line of `text` whose first character other than blanks is `[` (only those can cut):
/// its start, and the line from that `[` on, its `\n` included. Found by searching for `[`
/// rather than walking every line (400,000 at 1,000 VIPs of 100 backends).
fn headers(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let bytes = text.as_bytes();
    memchr::memchr_iter(b'[', bytes).filter_map(move |bracket| {
        let blanks = bytes[..bracket]
            .iter()
            .rev()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        let start = bracket - blanks;
        if start > 0 && bytes[start - 1] != b'\n' {
            return None;
        }
        let end =
            memchr::memchr(b'\n', &bytes[bracket..]).map_or(text.len(), |at| bracket + at + 1);
        Some((start, &text[bracket..end]))
    })
}

/// Whether a line opens a top-level `[[vip]]` table (a comment may follow).
fn opens_vip(line: &str) -> bool {
    line.strip_prefix("[[vip]]").is_some_and(|rest| {
        let rest = rest.trim_start_matches([' ', '\t']);
        rest.is_empty() || rest.starts_with(['#', '\n', '\r'])
    })
}

/// Whether a table header line names a table under a VIP (`[vip.health]`, `[[vip.backend]]`).
fn header_under_vip(line: &str) -> bool {
    let name = line.trim_start_matches('[').trim_start_matches([' ', '\t']);
    name.strip_prefix("vip")
        .is_some_and(|rest| rest.trim_start_matches([' ', '\t']).starts_with(['.', ']']))
}

/// The one VIP of a piece that starts `offset` bytes into the file.
fn parse_vip(piece: &str, offset: usize) -> Option<Spanned<VipFile>> {
    let tree = DeTable::parse(piece).ok()?;
    let span = moved(tree.span(), offset);
    let tree = Spanned::new(span, moved_table(tree.into_inner(), offset));
    let VipPiece { vip } = VipPiece::deserialize(Deserializer::from(tree)).ok()?;
    let [vip] = <[_; 1]>::try_from(vip).ok()?;
    Some(vip)
}

fn moved(span: Range<usize>, offset: usize) -> Range<usize> {
    shifted(span, offset as isize)
}

/// `table`, parsed from a piece `offset` bytes into the file, with the spans of the file.
fn moved_table(table: DeTable<'_>, offset: usize) -> DeTable<'_> {
    table
        .into_iter()
        .map(|(key, value)| {
            let span = moved(key.span(), offset);
            (
                Spanned::new(span, key.into_inner()),
                moved_value(value, offset),
            )
        })
        .collect()
}

fn moved_value(value: Spanned<DeValue<'_>>, offset: usize) -> Spanned<DeValue<'_>> {
    let span = moved(value.span(), offset);
    let inner = match value.into_inner() {
        DeValue::Table(table) => DeValue::Table(moved_table(table, offset)),
        DeValue::Array(mut items) => {
            // In place: the array keeps what the parser marked on it.
            for item in items.iter_mut() {
                let taken = std::mem::replace(item, Spanned::new(0..0, DeValue::Boolean(false)));
                *item = moved_value(taken, offset);
            }
            DeValue::Array(items)
        }
        other => other,
    };
    Spanned::new(span, inner)
}

#[cfg(test)]
mod tests {
    use std::{ops::Range, path::Path, sync::Arc};

    use super::{Reparse, header_under_vip, opens_vip, pieces};
    use crate::config::{diagnostic::Source, syntax};

    /// A config of `vips` VIPs of two backends each, backend 0 of VIP `heavy` weighing
    /// `weight`, with comments, a health table and `[alerts]` after the VIPs.
    fn config(vips: usize, heavy: usize, weight: u32) -> String {
        let mut text = String::from("# xlb\n[global]\ninterface = \"eth0\"\n\n");
        for i in 0..vips {
            let weight = if i == heavy { weight } else { 1 };
            text += &format!(
                "# VIP {i}\n[[vip]] # web\nname = \"web{i}\"\naddress = \"198.51.100.{i}\"\n\
                 port = 80\nprotocol = \"tcp\"\n\n  [[vip.backend]]\n  address = \"10.0.{i}.1\"\n  \
                 weight = {weight}\n    [vip.backend.health]\n    check = \"http\"\n\n  \
                 [[vip.backend]]\n  address = \"10.0.{i}.2\"\n\n"
            );
        }
        text + "[alerts]\nmin_healthy = 1\n"
    }

    /// Parses `text` with `reparse` and alone, checks that both give the same file (every
    /// value and span) or the same diagnostics, and returns how many VIPs `reparse` parsed
    /// (`usize::MAX` when it left the text to the full parse).
    fn same_as_full(reparse: &mut Reparse, text: &str) -> usize {
        let shared = Arc::from(text);
        let source = Source::new(text, Path::new("xlb.toml"));
        let full = format!("{:?}", syntax::parse(&source));
        let reused = format!("{:?}", syntax::parse_reusing(&source, &shared, reparse));
        assert_eq!(reused, full, "{text}");
        reparse.parsed().unwrap_or(usize::MAX)
    }

    /// Test that a reparse parses only the VIPs whose text changed, whether the edit keeps a
    /// VIP's length or moves every VIP after it (a longer weight, a backend added, a VIP
    /// removed or added), each giving the file, spans and line numbers included, that a full
    /// parse gives.
    #[test]
    fn an_edited_vip_is_parsed_again_and_the_rest_reused() {
        let mut reparse = Reparse::default();
        assert_eq!(same_as_full(&mut reparse, &config(10, 3, 1)), 10);
        assert_eq!(same_as_full(&mut reparse, &config(10, 3, 2)), 1);
        assert_eq!(same_as_full(&mut reparse, &config(10, 3, 2)), 0);
        // VIP 3 back to 1, VIP 6 one byte longer: the VIPs after it moved.
        assert_eq!(same_as_full(&mut reparse, &config(10, 6, 10)), 2);
        // The comment before a `[[vip]]` ends the piece of the VIP before it.
        assert_eq!(same_as_full(&mut reparse, &config(12, 6, 10)), 3);
        assert_eq!(same_as_full(&mut reparse, &config(9, 6, 10)), 1);
        let text = config(9, 6, 10);
        let backend = "  [[vip.backend]]\n  address = \"10.0.2.2\"\n";
        let added = text.replacen(
            backend,
            &format!("{backend}\n  [[vip.backend]]\n  address = \"10.0.2.3\"\n"),
            1,
        );
        assert_eq!(same_as_full(&mut reparse, &added), 1);
        // VIP 4 removed: VIP 3's piece now ends in VIP 5's comment; the rest moved back.
        let (four, five) = (
            added.find("# VIP 4").unwrap(),
            added.find("# VIP 5").unwrap(),
        );
        let removed = format!("{}{}", &added[..four], &added[five..]);
        assert_eq!(same_as_full(&mut reparse, &removed), 1);
        // A VIP added before VIP 1: it and VIP 0 (ending in its comment) are parsed.
        let one = removed.find("# VIP 1").unwrap();
        let vip = "# VIP new\n[[vip]]\nname = \"new\"\naddress = \"198.51.100.99\"\nport = 80\n\
                   protocol = \"tcp\"\n\n";
        let inserted = format!("{}{vip}{}", &removed[..one], &removed[one..]);
        assert_eq!(same_as_full(&mut reparse, &inserted), 2);
    }

    /// Test that the VIPs a reparse reuses are shared with the file it gave before, not
    /// copied, and that the VIP it parsed again is new.
    #[test]
    fn reused_vips_are_shared_not_copied() {
        let mut reparse = Reparse::default();
        let before = reparse.parse(&config(4, 2, 1).into()).expect("parses");
        let after = reparse.parse(&config(4, 2, 5).into()).expect("parses");
        let shared: Vec<bool> = (before.vip.iter().zip(&after.vip))
            .map(|(before, after)| Arc::ptr_eq(before, after))
            .collect();
        assert_eq!(shared, [true, true, false, true]);
    }

    /// Test that a VIP that fails to parse, or a mistake outside the VIPs, gives the full
    /// parse's diagnostics, and that the next valid text is parsed as a whole would be.
    #[test]
    fn errors_are_the_full_parse_ones() {
        let mut reparse = Reparse::default();
        let good = config(5, 0, 1);
        same_as_full(&mut reparse, &good);
        for bad in [
            good.replace("weight = 1\n", "weight = \n"),
            good.replace("name = \"web2\"", "name = \"web2\"\nnmae = \"x\""),
            good.replace("port = 80\n", "port = 80\nport = 81\n"),
            good.replace("[alerts]", "[alerts]\nwindow = 1\n[global]\nmtu = 1500"),
            good.replace("min_healthy = 1\n", "[alerts]\nmin_healthy = 2\n"),
            good.replace("[global]", "[vip.extra]\n[global]"),
            good.replace(
                "[alerts]",
                "[[vip.backend]]\naddress = \"10.9.9.9\"\n[alerts]",
            ),
            good.replace(
                "\n[[vip]] # web\nname = \"web4\"",
                "\n[[vip]]\n[[vip]]\nname = \"web4\"",
            ),
        ] {
            same_as_full(&mut reparse, &bad);
            same_as_full(&mut reparse, &good);
        }
    }

    /// Text that only looks like a `[[vip]]` header (inside multi-line strings, in a comment,
    /// spelled with spaces or quotes), CRLF line ends, another table after the VIPs, nothing.
    fn odd_files() -> Vec<String> {
        let good = config(4, 0, 1);
        vec![
            good.replace(
                "min_healthy = 1\n",
                "command = \"\"\"\n[[vip]]\nname = 1\n\"\"\"\n",
            ),
            good.replace(
                "min_healthy = 1\n",
                "command = '''\n[alerts]\n[[vip]]\n'''\nmin_healthy = 1\n",
            ),
            good.replace(
                "check = \"http\"",
                "check = \"http\"\n    path = \"\"\"\n[[vip]]\n\"\"\"",
            ),
            good.replace("# VIP 2\n", "# [[vip]]\n#[[vip]]\n"),
            good.replace(
                "[[vip]] # web\nname = \"web1\"",
                "[[ vip ]]\nname = \"web1\"",
            ),
            good.replace(
                "[[vip]] # web\nname = \"web1\"",
                "[[\"vip\"]]\nname = \"web1\"",
            ),
            good.replace(
                "[[vip.backend]]\n  address = \"10.0.2.1\"",
                "[[vip . backend]]\n  address = \"10.0.2.1\"",
            ),
            good.replace('\n', "\r\n"),
            good.replace("\n[alerts]", "\n[capacity]\nvips = 8\n[alerts]"),
            String::new(),
        ]
    }

    /// Test that text that only looks like a `[[vip]]` header (inside multi-line strings, in a
    /// comment, spelled with spaces or quotes) and CRLF line ends parse as a full parse does.
    #[test]
    fn odd_files_parse_as_a_whole() {
        let mut reparse = Reparse::default();
        for odd in odd_files() {
            same_as_full(&mut reparse, &odd);
        }
        let crlf = |text: String| text.replace('\n', "\r\n");
        same_as_full(&mut reparse, &crlf(config(6, 0, 1)));
        assert_eq!(same_as_full(&mut reparse, &crlf(config(6, 2, 3))), 1);
    }

    /// The cutting as it was before it searched for `[`: every line, one at a time.
    fn pieces_line_by_line(text: &str) -> Vec<(Range<usize>, bool)> {
        let mut pieces = Vec::new();
        let (mut start, mut at, mut in_vip) = (0, 0, false);
        for line in text.split_inclusive('\n') {
            let header = line.trim_start_matches([' ', '\t']);
            let cut = if opens_vip(header) {
                Some(true)
            } else if in_vip && header.starts_with('[') && !header_under_vip(header) {
                Some(false)
            } else {
                None
            };
            if let Some(vip) = cut {
                if at > start {
                    pieces.push((start..at, in_vip));
                }
                (start, in_vip) = (at, vip);
            }
            at += line.len();
        }
        if at > start || pieces.is_empty() {
            pieces.push((start..at, in_vip));
        }
        pieces
    }

    /// Test that finding the headers by their `[` cuts every odd file, and headers indented,
    /// after text, after a lone CR, at the very start or end, as walking every line did.
    #[test]
    fn searching_for_headers_cuts_as_every_line_did() {
        let good = config(3, 0, 1);
        let cases = odd_files().into_iter().chain([
            good.clone(),
            good.replace("[[vip]] # web", " \t [[vip]]\t# web"),
            good.replace("[alerts]", "\t[alerts]"),
            good.replace("[alerts]", "x = [1]\n [alerts]"),
            good.replace("[[vip]] # web", "\r[[vip]]"),
            good.replace("[[vip]] # web", "[[vip]]x"),
            format!("[[vip]]\n{good}[[vip]]"),
            format!("{good}["),
            "[".to_owned(),
            "\n\n[[vip]]\n[x]".to_owned(),
        ]);
        for text in cases {
            let cut: Vec<_> = pieces(&text)
                .into_iter()
                .map(|piece| (piece.range, piece.vip))
                .collect();
            assert_eq!(cut, pieces_line_by_line(&text), "{text:?}");
        }
    }

    /// Test that the example config, and an edit of it, parse as a full parse does.
    #[test]
    fn the_example_parses_as_a_whole() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/xlb.toml");
        let example = std::fs::read_to_string(path).expect("the example config");
        let mut reparse = Reparse::default();
        same_as_full(&mut reparse, &example);
        same_as_full(
            &mut reparse,
            &example.replacen("weight = ", "weight = 1", 1),
        );
    }
}
