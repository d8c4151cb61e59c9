//! Source readers: each turns one input file into [`RawRow`]s plus [`Reject`]s (file, line,
//! reason) without failing on a bad row. A file that cannot be read at all, or lacks a
//! column the recipe maps, is an error.
//!
//! Line-based formats (JSON Lines, BIO) are parsed line by line with serde so that one
//! malformed line becomes one reject instead of failing the whole file; `.gz` files are
//! decompressed on the fly. CSV and Parquet go through Polars' readers.

mod bio;
mod cti;
mod generic;

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::Serialize;

use crate::config::{SourceConfig, SourceKind};
use crate::error::{Error, Result};

/// A typed span of an entity-extraction row (character offsets into the text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    /// The entity type (`Malware`, `GROUP`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The span's text.
    pub text: String,
    /// Start, in characters.
    pub start: usize,
    /// End (exclusive), in characters.
    pub end: usize,
}

/// One row as read, before validation and cleaning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawRow {
    /// 1-based line (or row) in the source file.
    pub line: usize,
    /// The row's index among those one line yields (0 for most formats).
    pub part: usize,
    /// An id from the data itself (generic sources), else derived from the line.
    pub id: Option<String>,
    /// The split group; `None` makes the row its own group.
    pub group: Option<String>,
    /// The input text, as read.
    pub text: String,
    /// Technique labels as written (validated later against the catalog).
    pub labels: Vec<String>,
    /// Indicators as (type label, value), validated later.
    pub iocs: Vec<(String, String)>,
    /// Entity spans.
    pub entities: Vec<Entity>,
    /// The reference summary.
    pub summary: Option<String>,
}

/// A row that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reject {
    /// The source's name.
    pub source: String,
    /// The file it came from.
    pub file: String,
    /// 1-based line or row (0 when the row was built from several lines).
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// Everything read from one source.
#[derive(Debug, Default)]
pub struct SourceRead {
    /// Usable rows.
    pub rows: Vec<RawRow>,
    /// Rejected rows.
    pub rejects: Vec<Reject>,
}

impl SourceRead {
    fn reject(&mut self, src: &SourceConfig, path: &Path, line: usize, reason: String) {
        self.rejects.push(Reject {
            source: src.name.clone(),
            file: path.display().to_string(),
            line,
            reason,
        });
    }
}

/// Reads one source whole (at most `limit` usable rows).
///
/// # Errors
/// The file cannot be opened or read, is not the format its kind says, or lacks a column
/// that `columns` names.
pub fn read(src: &SourceConfig, path: &Path, base: &Path) -> Result<SourceRead> {
    let mut all = SourceRead::default();
    read_chunks(src, path, base, usize::MAX, &mut |chunk| {
        all.rows.extend(chunk.rows);
        all.rejects.extend(chunk.rejects);
        Ok(())
    })?;
    Ok(all)
}

/// Reads one source in chunks of at most `chunk_rows` usable rows (and the rejects met on
/// the way), handing each to `emit` in file order; stops after `limit` usable rows.
///
/// JSON Lines sources (generic and the built-in ones) and CSV and Parquet files are read
/// incrementally, so memory holds one chunk, not the file. BIO files, STIX bundles and
/// actor summaries are read whole (they are the bundled public corpora, tens of megabytes)
/// and then handed on in chunks.
///
/// # Errors
/// As [`read`], or whatever `emit` returns.
pub fn read_chunks(
    src: &SourceConfig,
    path: &Path,
    base: &Path,
    chunk_rows: usize,
    emit: &mut dyn FnMut(SourceRead) -> Result<()>,
) -> Result<()> {
    let mut sink = Sink {
        chunk: chunk_rows.max(1),
        remaining: src.limit,
        emit,
    };
    let rest = match src.kind {
        SourceKind::TramSingleLabel => cti::tram_single_label(src, path, &mut sink),
        SourceKind::TramSentences => cti::tram_sentences(src, path, &mut sink),
        SourceKind::TramReports => cti::tram_reports(src, path, &mut sink),
        SourceKind::AttackProcedures => cti::attack_procedures(src, path, &mut sink),
        SourceKind::AttackDescriptions => cti::attack_descriptions(src, path, &mut sink),
        SourceKind::Stix => cti::stix(path),
        SourceKind::IocSentences => cti::ioc_sentences(src, path, &mut sink),
        SourceKind::AnnoctrLinking => cti::annoctr_linking(src, path, &mut sink),
        SourceKind::ActorSummaries => cti::actor_summaries(src, path, base),
        SourceKind::Bio => bio::read(src, path),
        SourceKind::Jsonl => generic::jsonl(src, path, &mut sink),
        SourceKind::Csv | SourceKind::Parquet => generic::table(src, path, &mut sink),
    }?;
    sink.send_all(rest)
}

/// Where a reader hands rows on as it goes: a chunk at a time, up to the source's `limit`.
pub(crate) struct Sink<'a> {
    chunk: usize,
    /// Usable rows still wanted (`limit`), or `None` for all.
    remaining: Option<usize>,
    emit: &'a mut dyn FnMut(SourceRead) -> Result<()>,
}

impl Sink<'_> {
    /// Hands `out` on once it holds a chunk, or the rest of the limit.
    pub(crate) fn offer(&mut self, out: &mut SourceRead) -> Result<()> {
        let wanted = self.remaining.unwrap_or(usize::MAX).min(self.chunk);
        if out.rows.len() >= wanted {
            self.send(std::mem::take(out))?;
        }
        Ok(())
    }

    /// Usable rows per chunk.
    pub(crate) fn chunk_rows(&self) -> usize {
        self.chunk
    }

    /// Whether the limit has been reached, so reading can stop.
    pub(crate) fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Hands on everything in `out`, a chunk at a time.
    pub(crate) fn send_all(&mut self, mut out: SourceRead) -> Result<()> {
        while out.rows.len() > self.chunk && !self.done() {
            let rest = out.rows.split_off(self.chunk);
            let head = SourceRead {
                rows: std::mem::replace(&mut out.rows, rest),
                rejects: std::mem::take(&mut out.rejects),
            };
            self.send(head)?;
        }
        self.send(out)
    }

    fn send(&mut self, mut chunk: SourceRead) -> Result<()> {
        if let Some(remaining) = &mut self.remaining {
            chunk.rows.truncate(*remaining);
            *remaining -= chunk.rows.len();
        }
        if chunk.rows.is_empty() && chunk.rejects.is_empty() {
            return Ok(());
        }
        (self.emit)(chunk)
    }
}

/// Opens a text file, decompressing `.gz`.
///
/// # Errors
/// The file cannot be opened.
pub(crate) fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::GzDecoder::new(file))))
    } else {
        Ok(Box::new(BufReader::with_capacity(1 << 16, file)))
    }
}

/// Calls `each(line_no, line)` for every non-blank line of a JSON Lines file; a line that
/// fails to parse as `T` becomes a reject naming the line and the parser's message. With a
/// sink, full chunks are handed on as they fill and reading stops at the source's limit;
/// what is left is returned.
fn json_lines<T: serde::de::DeserializeOwned>(
    src: &SourceConfig,
    path: &Path,
    mut sink: Option<&mut Sink<'_>>,
    mut each: impl FnMut(&mut SourceRead, usize, T),
) -> Result<SourceRead> {
    let mut out = SourceRead::default();
    for (i, line) in open(path)?.lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(&line) {
            Ok(v) => each(&mut out, line_no, v),
            Err(e) => out.reject(src, path, line_no, format!("invalid row: {e}")),
        }
        if let Some(sink) = sink.as_deref_mut() {
            sink.offer(&mut out)?;
            if sink.done() {
                break;
            }
        }
    }
    Ok(out)
}
