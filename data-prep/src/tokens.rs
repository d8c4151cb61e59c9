//! Token counts with a model's tokenizer (`tokenizer.json` through the `tokenizers`
//! crate), and the `max_tokens` limit: rows over it are dropped, or their input text is
//! shortened until prompt and completion fit.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use crate::config::{Overflow, PrepConfig};
use crate::error::{Error, Result};
use crate::pipeline::{Row, sha256_file};
use crate::prompt::Prompts;
use crate::sources::Reject;

/// Loads `path` (a `tokenizer.json`, or a folder holding one).
fn load(path: &Path) -> Result<(Tokenizer, PathBuf)> {
    let file = if path.is_dir() {
        path.join("tokenizer.json")
    } else {
        path.to_path_buf()
    };
    let tok = Tokenizer::from_file(&file).map_err(|e| Error::Tokenizer {
        path: file.clone(),
        message: e.to_string(),
    })?;
    Ok((tok, file))
}

fn count(tok: &Tokenizer, texts: Vec<&str>, path: &Path) -> Result<Vec<u32>> {
    let enc = tok
        .encode_batch(texts, false)
        .map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(enc.iter().map(|e| e.len() as u32).collect())
}

/// A loaded tokenizer that counts the tokens of rows, a chunk at a time.
pub(crate) struct Counter {
    tok: Tokenizer,
    file: PathBuf,
    sha256: String,
}

impl Counter {
    /// Loads `path` (a `tokenizer.json`, or a folder holding one).
    ///
    /// # Errors
    /// The tokenizer cannot be read or parsed.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let (tok, file) = load(path)?;
        let sha256 = sha256_file(&file)?;
        Ok(Self { tok, file, sha256 })
    }

    /// `file (sha256)`, for the manifest.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", self.file.display(), self.sha256)
    }

    /// Counts the tokens of every row and applies `max_tokens`: rows over it are dropped
    /// into `rejects`, or shortened, as `tokens.overflow` says.
    ///
    /// # Errors
    /// The tokenizer fails on a text, or a shortened row fails to render.
    pub(crate) fn apply(
        &self,
        rows: &mut Vec<Row>,
        cfg: &PrepConfig,
        prompts: &Prompts,
        rejects: &mut Vec<Reject>,
    ) -> Result<()> {
        let (tok, file) = (&self.tok, &self.file);
        let counts = count(tok, rows.iter().map(|r| r.prompt.as_str()).collect(), file)?;
        let completions = count(
            tok,
            rows.iter().map(|r| r.completion.as_str()).collect(),
            file,
        )?;
        for (r, (p, c)) in rows.iter_mut().zip(counts.into_iter().zip(completions)) {
            r.prompt_tokens = Some(p);
            r.completion_tokens = Some(c);
        }
        let max = cfg.tokens.max_tokens as u32;
        if max == 0 {
            return Ok(());
        }
        let mut keep = Vec::with_capacity(rows.len());
        for mut r in std::mem::take(rows) {
            let fits = match cfg.tokens.overflow {
                Overflow::Drop => total(&r) <= max,
                Overflow::Truncate => truncate(&mut r, max, tok, prompts, file)?,
            };
            if fits {
                keep.push(r);
            } else {
                rejects.push(Reject {
                    source: cfg.sources[r.source].name.clone(),
                    file: cfg.sources[r.source].path.clone(),
                    line: r.line,
                    reason: format!(
                        "{} prompt + {} completion tokens exceed tokens.max_tokens = {max}",
                        r.prompt_tokens.unwrap_or(0),
                        r.completion_tokens.unwrap_or(0)
                    ),
                });
            }
        }
        *rows = keep;
        Ok(())
    }
}

fn total(r: &Row) -> u32 {
    r.prompt_tokens.unwrap_or(0) + r.completion_tokens.unwrap_or(0)
}

/// Shortens the row's text (by characters, in proportion to the excess) and re-renders,
/// a few times; false when even an empty input would not fit.
fn truncate(
    r: &mut Row,
    max: u32,
    tok: &Tokenizer,
    prompts: &Prompts,
    file: &Path,
) -> Result<bool> {
    for _ in 0..6 {
        if total(r) <= max {
            return Ok(true);
        }
        let budget = max.saturating_sub(r.completion_tokens.unwrap_or(0));
        let chars = r.text.chars().count();
        let p = r.prompt_tokens.unwrap_or(1).max(1) as usize;
        let keep = chars * (budget as usize) / p * 9 / 10;
        if keep == 0 || budget == 0 {
            return Ok(false);
        }
        r.text = r.text.chars().take(keep).collect();
        let (prompt, completion) = prompts.render_pair(r.task, &r.text, &r.target)?;
        let n = count(tok, vec![prompt.as_str(), completion.as_str()], file)?;
        r.prompt_tokens = n.first().copied();
        r.completion_tokens = n.get(1).copied();
        r.prompt = prompt;
        r.completion = completion;
    }
    Ok(total(r) <= max)
}
