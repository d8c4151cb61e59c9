//! CoNLL-style BIO files (CyNER, AnnoCTR): one token per line followed by one or more tag
//! columns, a blank line between sentences, `<DOCSTART>`/`-DOCSTART-` between documents.
//! Each sentence becomes one row: its tokens joined by single spaces, with entity spans
//! decoded the way seqeval does in its default (non-strict) mode: `B-X` opens a span, `I-X`
//! continues a span of type X and opens one after `O` or another type.

use std::io::BufRead;
use std::path::Path;

use super::{Entity, RawRow, SourceRead, open};
use crate::config::SourceConfig;
use crate::error::{Error, Result};

/// Reads a BIO file.
///
/// # Errors
/// The file cannot be read. Malformed tags reject their sentence.
pub(super) fn read(src: &SourceConfig, path: &Path) -> Result<SourceRead> {
    let column = src.tag_column.unwrap_or(1);
    let mut out = SourceRead::default();
    let mut doc = 0usize;
    let mut sentence: Vec<(String, String)> = Vec::new();
    let mut start_line = 0usize;
    let mut bad: Option<String> = None;
    let mut lines = open(path)?.lines().enumerate();
    loop {
        let next = lines.next();
        let done = next.is_none();
        let (line_no, line) = match next {
            Some((i, l)) => (i + 1, l.map_err(|e| Error::io(path, e))?),
            None => (0, String::new()),
        };
        let first = line.split(['\t', ' ']).next().unwrap_or_default().trim();
        let boundary = line.trim().is_empty() || first == "<DOCSTART>" || first == "-DOCSTART-";
        if boundary {
            if !sentence.is_empty() {
                match bad.take() {
                    Some(reason) => out.reject(src, path, start_line, reason),
                    None => out.rows.push(sentence_row(&sentence, start_line, doc, src)),
                }
                sentence.clear();
            }
            if first == "<DOCSTART>" || first == "-DOCSTART-" {
                doc += 1;
            }
            if done {
                break;
            }
            continue;
        }
        if line.split('\t').next().is_some_and(|t| t.trim().is_empty()) {
            continue; // a whitespace-only token (AnnoCTR has runs of no-break spaces)
        }
        if sentence.is_empty() {
            start_line = line_no;
        }
        // Tab-separated when the line has tabs (tokens may then hold spaces), else spaces.
        let cells: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        match cells.get(column) {
            Some(tag) if valid_tag(tag) => {
                sentence.push((cells[0].to_owned(), (*tag).to_owned()));
            }
            Some(tag) => {
                bad.get_or_insert(format!("line {line_no}: tag `{tag}` is not O, B-X or I-X"));
                sentence.push((cells[0].to_owned(), "O".into()));
            }
            None => {
                bad.get_or_insert(format!(
                    "line {line_no}: no tag column {column} (found {} columns)",
                    cells.len()
                ));
                sentence.push((
                    cells.first().copied().unwrap_or_default().to_owned(),
                    "O".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn valid_tag(tag: &str) -> bool {
    tag == "O"
        || tag
            .strip_prefix("B-")
            .or_else(|| tag.strip_prefix("I-"))
            .is_some_and(|t| !t.is_empty())
}

/// Joins tokens with spaces and decodes spans into character offsets.
fn sentence_row(
    tokens: &[(String, String)],
    line: usize,
    doc: usize,
    src: &SourceConfig,
) -> RawRow {
    let mut text = String::new();
    let mut offsets = Vec::with_capacity(tokens.len());
    for (i, (tok, _)) in tokens.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        let start = text.chars().count();
        text.push_str(tok);
        offsets.push((start, start + tok.chars().count()));
    }
    let mut entities: Vec<Entity> = Vec::new();
    let mut open: Option<(String, usize, usize)> = None; // (type, first token, last token)
    let close = |open: &mut Option<(String, usize, usize)>, entities: &mut Vec<Entity>| {
        if let Some((kind, a, b)) = open.take() {
            let (start, end) = (offsets[a].0, offsets[b].1);
            let span: String = text.chars().skip(start).take(end - start).collect();
            entities.push(Entity {
                kind,
                text: span,
                start,
                end,
            });
        }
    };
    for (i, (_, tag)) in tokens.iter().enumerate() {
        if tag == "O" {
            close(&mut open, &mut entities);
            continue;
        }
        let (prefix, kind) = tag.split_at(2);
        let continues = prefix == "I-" && open.as_ref().is_some_and(|(k, _, _)| k == kind);
        if continues {
            if let Some(o) = open.as_mut() {
                o.2 = i;
            }
        } else {
            close(&mut open, &mut entities);
            open = Some((kind.to_owned(), i, i));
        }
    }
    close(&mut open, &mut entities);
    if !src.entity_types.is_empty() {
        entities.retain(|e| src.entity_types.contains(&e.kind));
    }
    RawRow {
        line,
        group: Some(if doc > 0 {
            format!("doc{doc}")
        } else {
            format!("line{line}")
        }),
        text,
        entities,
        ..RawRow::default()
    }
}
