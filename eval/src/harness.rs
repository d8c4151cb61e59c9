//! Running a model over examples: batched, KV-cached greedy generation with per-task stop
//! criteria, the completion's language-modelling loss, and a partial-predictions file so a
//! long evaluation that is killed continues where it stopped.
//!
//! Batches hold one task each (stop strings are per task) and prompts of similar length
//! (less padding). A prompt longer than the model's context minus the generation budget
//! keeps its BOS token and its end (the instruction's tail and the answer cue) and is
//! counted as truncated.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use ctiforge_data_prep::Task;
use ctiforge_model::transformer::{CausalLm, to_host};
use ctiforge_model::{CtiTokenizer, SamplingConfig};
use ctiforge_train::data::{Example, collate};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::example::EvalExample;
use crate::score::RawOutput;

/// Name of the partial predictions file inside the output folder.
pub const PARTIAL_FILE: &str = "predictions.partial.jsonl";

/// How to run the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenSettings {
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Most new tokens per answer; `None` uses each task's default
    /// ([`default_max_new_tokens`]).
    pub max_new_tokens: Option<usize>,
    /// Also measure the loss of the reference completion (for `lm.perplexity`).
    pub measure_loss: bool,
}

impl Default for GenSettings {
    fn default() -> Self {
        GenSettings {
            batch_size: 8,
            max_new_tokens: None,
            measure_loss: true,
        }
    }
}

/// The generation budget of a task: room for a few technique IDs, a dozen indicator or
/// entity lines, a paragraph of summary.
pub fn default_max_new_tokens(task: Task) -> usize {
    match task {
        Task::TechniqueClassification => 32,
        Task::IocExtraction | Task::EntityExtraction => 128,
        Task::Summarization => 160,
        Task::Text => 0,
    }
}

/// Where an answer ends besides the EOS token: technique lists are one line, the others
/// end at a blank line.
fn stop_strings(task: Task) -> Vec<String> {
    match task {
        Task::TechniqueClassification => vec!["\n".to_owned()],
        _ => vec!["\n\n".to_owned()],
    }
}

/// The model and what generation needs from its folder.
pub struct Runner<'a> {
    /// The (merged) network.
    pub model: &'a CausalLm,
    /// Its tokenizer.
    pub tokenizer: &'a CtiTokenizer,
    /// Token ids that end an answer.
    pub stop_token_ids: Vec<u32>,
}

/// Throughput of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Examples run in this invocation (resumed ones excluded).
    pub examples: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Seconds spent in generation and loss passes.
    pub secs: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartialHeader {
    fingerprint: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartialLine {
    id: String,
    text: String,
    finish: Option<String>,
    truncated: bool,
    lm: Option<(f64, u64)>,
}

/// Reads finished answers from an earlier, interrupted run with the same `fingerprint`.
/// A torn last line (the process was killed mid-write) is dropped and the file rewritten
/// without it.
///
/// # Errors
/// The file belongs to a run with other settings (remove it, or pass `--force`), or it is
/// unreadable.
pub fn read_partial(path: &Path, fingerprint: &str) -> Result<BTreeMap<String, RawOutput>> {
    let mut done = BTreeMap::new();
    if !path.is_file() {
        return Ok(done);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: Option<PartialHeader> = match lines.next() {
        Some(l) => serde_json::from_str(&l.map_err(|e| Error::io(path, e))?).ok(),
        None => None,
    };
    match header {
        Some(h) if h.fingerprint == fingerprint => {}
        Some(_) => {
            return Err(Error::Input {
                path: path.to_path_buf(),
                message: "partial predictions from an evaluation with another model, data or \
                          settings; delete the file or pass --force to start over"
                    .to_owned(),
            });
        }
        None => return Ok(done),
    }
    let mut good = Vec::new();
    for line in lines {
        let line = line.map_err(|e| Error::io(path, e))?;
        match serde_json::from_str::<PartialLine>(&line) {
            Ok(p) => {
                good.push(line);
                done.insert(
                    p.id,
                    RawOutput {
                        text: p.text,
                        finish: p.finish,
                        truncated: p.truncated,
                        lm: p.lm,
                    },
                );
            }
            Err(_) => break,
        }
    }
    // Rewrite without a torn tail so appends continue on a clean line.
    let mut text = json_line(&PartialHeader {
        fingerprint: fingerprint.to_owned(),
    });
    text.push('\n');
    for l in good {
        text.push_str(&l);
        text.push('\n');
    }
    crate::report::write_atomic(path, text.as_bytes())?;
    tracing::info!(
        file = %path.display(),
        answers = done.len(),
        "resuming from partial predictions"
    );
    Ok(done)
}

fn append_partial(path: &Path, fingerprint: &str, lines: &[PartialLine]) -> Result<()> {
    let fresh = !path.is_file();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut buf = String::new();
    if fresh {
        buf.push_str(&json_line(&PartialHeader {
            fingerprint: fingerprint.to_owned(),
        }));
        buf.push('\n');
    }
    for l in lines {
        buf.push_str(&json_line(l));
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())
        .map_err(|e| Error::io(path, e))?;
    f.sync_data().map_err(|e| Error::io(path, e))
}

/// One record as JSON (the partial-file records are plain strings and numbers, which
/// always serialise).
fn json_line<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl Runner<'_> {
    /// Answers every example not in `done`, appending each batch's answers to
    /// `partial` (with `fingerprint` as its header), and returns all answers by id.
    /// `progress(done, total)` is called after each batch.
    ///
    /// # Errors
    /// Tokenizer or model failures; a context too small for the generation budget; I/O on
    /// the partial file.
    pub fn run(
        &self,
        examples: &[EvalExample],
        settings: &GenSettings,
        mut done: BTreeMap<String, RawOutput>,
        partial: &Path,
        fingerprint: &str,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(BTreeMap<String, RawOutput>, Throughput)> {
        let total = examples.len();
        let mut todo: Vec<(&EvalExample, Vec<u32>)> = Vec::new();
        for ex in examples.iter().filter(|e| !done.contains_key(&e.id)) {
            let ids = self
                .tokenizer
                .encode(&ex.prompt, true)
                .map_err(Error::model)?;
            todo.push((ex, ids));
        }
        todo.sort_by_key(|(ex, ids)| (ex.task, ids.len()));
        let mut stats = Throughput::default();
        let started = Instant::now();
        progress(done.len(), total);
        let mut i = 0;
        while i < todo.len() {
            let task = todo[i].0.task;
            let mut j = i;
            while j < todo.len() && j - i < settings.batch_size.max(1) && todo[j].0.task == task {
                j += 1;
            }
            let batch = &todo[i..j];
            let lines = self.run_batch(task, batch, settings, &mut stats)?;
            append_partial(partial, fingerprint, &lines)?;
            for l in lines {
                done.insert(
                    l.id,
                    RawOutput {
                        text: l.text,
                        finish: l.finish,
                        truncated: l.truncated,
                        lm: l.lm,
                    },
                );
            }
            progress(done.len(), total);
            i = j;
        }
        stats.examples = todo.len();
        stats.secs = started.elapsed().as_secs_f64();
        Ok((done, stats))
    }

    fn run_batch(
        &self,
        task: Task,
        batch: &[(&EvalExample, Vec<u32>)],
        settings: &GenSettings,
        stats: &mut Throughput,
    ) -> Result<Vec<PartialLine>> {
        let ctx = self.model.config.max_seq_len;
        let max_new = settings
            .max_new_tokens
            .unwrap_or_else(|| default_max_new_tokens(task));
        let mut lines: Vec<PartialLine> = batch
            .iter()
            .map(|(ex, _)| PartialLine {
                id: ex.id.clone(),
                text: String::new(),
                finish: None,
                truncated: false,
                lm: None,
            })
            .collect();
        if task != Task::Text && max_new > 0 {
            let budget = ctx
                .checked_sub(max_new)
                .filter(|b| *b >= 2)
                .ok_or_else(|| Error::Input {
                    path: "--max-new-tokens".into(),
                    message: format!(
                        "{max_new} new tokens leave no room for a prompt in the model's \
                         context of {ctx} tokens"
                    ),
                })?;
            let mut prompts = Vec::with_capacity(batch.len());
            for ((_, ids), line) in batch.iter().zip(lines.iter_mut()) {
                let (fitted, cut) = fit_left(ids, budget);
                line.truncated = cut;
                prompts.push(fitted);
            }
            let config = SamplingConfig {
                max_new_tokens: max_new,
                temperature: 0.0,
                stop_token_ids: self.stop_token_ids.clone(),
                stop_strings: stop_strings(task),
                ..SamplingConfig::default()
            };
            let outs =
                ctiforge_model::generate(self.model, &prompts, &config, Some(self.tokenizer))
                    .map_err(Error::model)?;
            for (o, line) in outs.into_iter().zip(lines.iter_mut()) {
                stats.generated_tokens += o.ids.len();
                line.text = o.text;
                line.finish = serde_json::to_value(o.finish)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned));
            }
        }
        if settings.measure_loss {
            let losses = self.completion_losses(batch)?;
            for (l, line) in losses.into_iter().zip(lines.iter_mut()) {
                line.lm = l;
            }
        }
        Ok(lines)
    }

    /// Summed negative log-likelihood of each example's reference completion (and EOS)
    /// given its prompt, with the number of tokens; `None` when nothing of the completion
    /// fits the context.
    pub(crate) fn completion_losses(
        &self,
        batch: &[(&EvalExample, Vec<u32>)],
    ) -> Result<Vec<Option<(f64, u64)>>> {
        let ctx = self.model.config.max_seq_len;
        let eos = self.tokenizer.eos_token_id();
        let mut examples = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for (ex, prompt) in batch {
            let mut completion = self
                .tokenizer
                .encode(&ex.completion, false)
                .map_err(Error::model)?;
            completion.extend(eos);
            completion.truncate(ctx.saturating_sub(2));
            if completion.is_empty() {
                slots.push(None);
                continue;
            }
            let (fitted, _) = fit_left(prompt, ctx - completion.len());
            let loss_from = fitted.len().max(1);
            let mut tokens = fitted;
            tokens.extend(completion);
            slots.push(Some(examples.len()));
            examples.push(Example { tokens, loss_from });
        }
        if examples.is_empty() {
            return Ok(vec![None; batch.len()]);
        }
        let refs: Vec<&Example> = examples.iter().collect();
        let pad = self.tokenizer.pad_token_id().or(eos).unwrap_or(0);
        let mb = collate(&refs, pad, self.model.config.sliding_window);
        let (b, t) = (mb.forward.batch, mb.forward.seq);
        let device = self.model.device();
        let logits = self
            .model
            .forward(&mb.forward, None)
            .map_err(Error::model)?;
        let targets =
            Tensor::<3, Int>::from_data(TensorData::new(mb.targets.clone(), [b, t, 1]), &device);
        let w = Tensor::<3>::from_data(TensorData::new(mb.weights.clone(), [b, t, 1]), &device);
        let nll = (log_softmax(logits, 2).gather(2, targets) * w)
            .sum_dim(1)
            .neg()
            .reshape([b]);
        let sums = to_host(nll).map_err(Error::model)?;
        let counts: Vec<u64> = mb
            .weights
            .chunks(t)
            .map(|row| row.iter().filter(|w| **w > 0.0).count() as u64)
            .collect();
        Ok(slots
            .into_iter()
            .map(|s| s.map(|k| (f64::from(sums[k]), counts[k])))
            .collect())
    }
}

/// `ids` cut to at most `budget` tokens by dropping tokens after the first (BOS), so the
/// prompt's end stays; whether anything was cut.
fn fit_left(ids: &[u32], budget: usize) -> (Vec<u32>, bool) {
    if ids.len() <= budget {
        return (ids.to_vec(), false);
    }
    let mut out = Vec::with_capacity(budget);
    out.push(ids[0]);
    out.extend_from_slice(&ids[ids.len() - (budget - 1)..]);
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_prompts_keep_bos_and_their_end() {
        assert_eq!(fit_left(&[1, 5, 6, 7, 8], 3), (vec![1, 7, 8], true));
        assert_eq!(fit_left(&[1, 5], 3), (vec![1, 5], false));
    }

    #[test]
    fn a_partial_file_from_other_settings_is_refused_and_a_torn_tail_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(PARTIAL_FILE);
        let line = PartialLine {
            id: "a".into(),
            text: " T1105".into(),
            finish: Some("stop_string".into()),
            truncated: false,
            lm: Some((1.5, 3)),
        };
        append_partial(&path, "fp1", &[line]).expect("append");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(b"{\"id\": \"b\", \"te").expect("torn");
        drop(f);
        let done = read_partial(&path, "fp1").expect("read");
        assert_eq!(done.len(), 1);
        assert_eq!(done["a"].text, " T1105");
        let text = std::fs::read_to_string(&path).expect("read back");
        assert_eq!(text.lines().count(), 2, "{text}");
        let err = read_partial(&path, "fp2").expect_err("other settings");
        assert!(err.to_string().contains("--force"), "{err}");
    }
}
