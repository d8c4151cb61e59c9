//! The training loop: seeded epoch shuffles, micro-batches accumulated into token-weighted
//! optimizer steps, clipping, AdamW, the schedule, periodic validation, `metrics.jsonl`,
//! atomic checkpoints with `--resume`, and the run's final adapter and `run.json`.
//!
//! Everything random is a pure function of the seed and the step (the shuffle of each
//! epoch, each micro-batch's dropout masks), so a checkpoint needs only the step, the
//! adapter values and the optimizer moments to continue bit-for-bit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use ctiforge_model::adapter::{LoraMatrix, peft_name};
use ctiforge_model::lora::{self, AdapterValues, splitmix};
use ctiforge_model::transformer::{CausalLm, to_host};
use ctiforge_model::weights::{Checkpoint, HostTensor, SaveDtype, write_safetensors};
use ctiforge_model::{LoadedModel, parse_device};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::{TrainConfig, TrainMode};
use crate::data::{Example, MicroBatch, collate, load_split};
use crate::error::{Error, Result};
use crate::full::Trainable;
use crate::optim::{ParamState, adamw_step, clip, global_norm, learning_rate};

/// Per-step metrics file.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Lineage summary.
pub const RUN_FILE: &str = "run.json";
/// The resolved config.
pub const CONFIG_FILE: &str = "config.toml";
/// Checkpoint folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Folder of the best adapter when `eval.keep_best` is on.
pub const BEST_DIR: &str = "best";

/// Called after every optimizer step with the step's metrics and the total step count
/// (the CLI draws its progress bar with it).
pub type ProgressFn = std::sync::Arc<dyn Fn(&StepMetrics, u64) + Send + Sync>;

/// How to run beyond the recipe.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Continue from the newest checkpoint in the run folder.
    pub resume: bool,
    /// Stop (as if killed) right after this step, without the end-of-run outputs. For tests.
    pub halt_after: Option<u64>,
    /// Progress callback; when set, per-step log lines go to the debug level.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("resume", &self.resume)
            .field("halt_after", &self.halt_after)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based optimizer step.
    pub step: u64,
    /// Fractional epoch reached.
    pub epoch: f64,
    /// Token-weighted mean loss of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Input tokens processed per second in this step.
    pub tokens_per_sec: f64,
    /// Wall time of the step: forward, backward and optimizer update (0 in files written
    /// before this field existed).
    #[serde(default)]
    pub step_secs: f64,
    /// Validation loss, on steps that evaluate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_loss: Option<f64>,
    /// Validation perplexity, on steps that evaluate.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_ppl: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Optimizer steps done.
    pub steps: u64,
    /// Training loss of the last step.
    pub final_loss: f64,
    /// Validation loss before training (the base model).
    pub initial_val_loss: f64,
    /// Validation loss at the end.
    pub final_val_loss: f64,
    /// Wall time of this invocation.
    pub duration_secs: f64,
    /// Dataset fingerprint from its manifest.
    pub dataset_fingerprint: Option<String>,
    /// SHA-256 of the base model's `config.json` and safetensors file names and sizes.
    pub base_model_hash: String,
    /// This crate's version.
    pub code_version: String,
    /// Peak resident memory of the process, when the OS reports it.
    pub peak_rss_bytes: Option<u64>,
    /// The step of the lowest validation loss, and that loss.
    #[serde(default)]
    pub best: Option<(u64, f64)>,
    /// Whether the run stopped early on `eval.patience`.
    #[serde(default)]
    pub stopped_early: bool,
    /// Whether the run's adapter is the best one (`eval.keep_best`) rather than the last.
    #[serde(default)]
    pub adapter_is_best: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    seed: u64,
    total_steps: u64,
    initial_val_loss: f64,
    /// Best validation loss so far and its step.
    #[serde(default)]
    best: Option<(u64, f64)>,
    /// Validations since the best one.
    #[serde(default)]
    stale_evals: u64,
    /// The last validation loss.
    #[serde(default)]
    last_val: Option<f64>,
}

/// Runs (or resumes) the recipe into `out`; returns the summary also written to `run.json`.
///
/// # Errors
/// Bad config or data, model loading, I/O, a non-finite loss ([`Error::NonFinite`]), or a
/// resume from a folder without a usable checkpoint.
pub fn train(config: &TrainConfig, out: &Path, opts: &RunOptions) -> Result<RunSummary> {
    let started = Instant::now();
    let device = parse_device(&config.run.device)?.autodiff();
    let loaded = LoadedModel::resolve(&config.run.model, &device)?;
    let tokenizer = loaded.tokenizer()?.clone();
    let base_model_hash = model_hash(&loaded.dir)?;
    if config.run.mode == TrainMode::Lora {
        config.lora.validate(loaded.model.layers.len())?;
    }
    let bs = &config.batch;
    let train_set = load_split(
        &config.run.data,
        "train",
        &tokenizer,
        bs.max_seq_len,
        config.run.completion_only,
    )?;
    let mut val_set = load_split(
        &config.run.data,
        "validation",
        &tokenizer,
        bs.max_seq_len,
        config.run.completion_only,
    )?;
    if config.eval.max_examples > 0 {
        val_set.truncate(config.eval.max_examples);
    }
    let fingerprint = ctiforge_data_prep::Manifest::read(&config.run.data)
        .ok()
        .map(|m| m.fingerprint);
    let pad = tokenizer
        .pad_token_id()
        .or(tokenizer.eos_token_id())
        .unwrap_or(0);
    let window = loaded.model.config.sliding_window;

    let steps_per_epoch = train_set.len().div_ceil(bs.batch) as u64;
    let total = (steps_per_epoch * config.run.epochs).min(config.run.max_steps.unwrap_or(u64::MAX));

    std::fs::create_dir_all(out.join(CHECKPOINTS_DIR)).map_err(|e| Error::io(out, e))?;
    check_tokenizer(&config.run.data, &tokenizer);
    let mut best: Option<(u64, f64)> = None;
    let mut stale_evals = 0u64;
    let mut resumed_val: Option<f64> = None;
    let (trainable, init_params) = match config.run.mode {
        TrainMode::Lora => {
            let layout = lora::init_adapters(&loaded.model, &config.lora, 0)?;
            let init = lora::init_adapters(&loaded.model, &config.lora, config.run.seed)?;
            let t = Trainable::Lora {
                config: config.lora.clone(),
                layout,
            };
            (t, to_params(&init))
        }
        TrainMode::Full => Trainable::full(&loaded.model)?,
    };
    let (mut params, mut step, initial_val_loss) = if opts.resume {
        let ckpt = latest_checkpoint(out)?.ok_or_else(|| Error::Resume {
            path: out.to_path_buf(),
            message: "no checkpoint to resume from in checkpoints/".to_owned(),
        })?;
        let (params, state) = read_checkpoint(&ckpt, &trainable)?;
        if state.seed != config.run.seed || state.total_steps != total {
            return Err(Error::Resume {
                path: ckpt,
                message: "the checkpoint was written by a run with another seed or length; \
                          resume with the run's saved config.toml"
                    .to_owned(),
            });
        }
        truncate_metrics(&out.join(METRICS_FILE), state.step)?;
        tracing::info!(step = state.step, checkpoint = %ckpt.display(), "resuming");
        best = state.best;
        stale_evals = state.stale_evals;
        resumed_val = state.last_val;
        (params, state.step, state.initial_val_loss)
    } else {
        let _ = std::fs::remove_file(out.join(METRICS_FILE));
        let model = trainable.model(&loaded.model, &init_params)?;
        let v = evaluate(&model, &val_set, bs.micro_batch, pad, window)?;
        tracing::info!(val_loss = v, "validation loss before training");
        (init_params, 0, v)
    };
    write_text(
        &out.join(CONFIG_FILE),
        &serialised(&out.join(CONFIG_FILE), toml::to_string(config))?,
    )?;
    let base_dir = loaded.dir.clone();
    let base = loaded.model;
    let mut last_loss = f64::NAN;
    let mut last_val = resumed_val.unwrap_or(initial_val_loss);
    let mut stopped_early = false;

    while step < total {
        let step_started = Instant::now();
        let lr = learning_rate(&config.schedule, config.optim.lr, step, total);
        let batch: Vec<&Example> = step_batch(train_set.len(), config.run.seed, bs.batch, step)
            .into_iter()
            .map(|i| &train_set[i])
            .collect();
        let loss_tokens: usize = batch.iter().map(|e| e.loss_tokens()).sum();
        let mut model = trainable.model(&base, &params)?;
        let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
        let (mut loss, mut input_tokens) = (0.0f64, 0usize);
        for (k, chunk) in batch.chunks(bs.micro_batch).enumerate() {
            let mb = if bs.packing {
                crate::data::collate_packed(chunk, bs.max_seq_len, pad, window)
            } else {
                collate(chunk, pad, window)
            };
            input_tokens += mb.input_tokens;
            lora::set_dropout_seed(
                &mut model,
                Some(splitmix(
                    config.run.seed ^ splitmix(step * 1_000_003 + k as u64),
                )),
            );
            let l = weighted_loss(&model, &mb, 1.0 / loss_tokens.max(1) as f32)?;
            let g = l.backward();
            loss += f64::from(to_host(l)?[0]);
            for (slot, g) in grads.iter_mut().zip(trainable.grads(&model, &g)?) {
                add(slot, &g);
            }
        }
        step += 1;
        if !loss.is_finite() {
            return Err(Error::NonFinite {
                step,
                loss,
                last_checkpoint: latest_checkpoint(out)?,
            });
        }
        let grad_norm = match config.optim.max_grad_norm {
            Some(max) => clip(&mut grads, max),
            None => global_norm(&grads),
        };
        adamw_step(&mut params, &grads, &config.optim, lr, step);
        let step_secs = step_started.elapsed().as_secs_f64();
        last_loss = loss;
        let mut metrics = StepMetrics {
            step,
            epoch: step as f64 / steps_per_epoch as f64,
            loss,
            lr,
            grad_norm,
            tokens_per_sec: input_tokens as f64 / step_secs.max(1e-9),
            step_secs,
            val_loss: None,
            val_ppl: None,
        };
        let every = |n: u64| n > 0 && step % n == 0;
        if every(config.eval.every_steps) || step == total {
            let model = trainable.model(&base, &params)?;
            let v = evaluate(&model, &val_set, bs.micro_batch, pad, window)?;
            last_val = v;
            metrics.val_loss = Some(v);
            metrics.val_ppl = Some(v.exp());
            if best.is_none_or(|(_, b)| v < b) {
                best = Some((step, v));
                stale_evals = 0;
                if config.eval.keep_best {
                    let dir = out.join(BEST_DIR);
                    atomic_dir(&dir, |tmp| {
                        trainable.save_final(tmp, &base, &base_dir, &config.run.model, &params)
                    })?;
                }
            } else {
                stale_evals += 1;
                if config.eval.patience > 0 && stale_evals >= config.eval.patience {
                    stopped_early = true;
                }
            }
        }
        if opts.progress.is_some() {
            tracing::debug!(
                step,
                total,
                loss = format!("{loss:.4}"),
                lr,
                grad_norm,
                "step"
            );
        } else {
            tracing::info!(
                step,
                total,
                loss = format!("{loss:.4}"),
                lr,
                grad_norm,
                "step"
            );
        }
        append_metrics(&out.join(METRICS_FILE), &metrics)?;
        if let Some(progress) = &opts.progress {
            progress(&metrics, total);
        }
        if every(config.checkpoint.every_steps) || step == total || stopped_early {
            let state = TrainerState {
                step,
                seed: config.run.seed,
                total_steps: total,
                initial_val_loss,
                best,
                stale_evals,
                last_val: Some(last_val),
            };
            write_checkpoint(out, config, &trainable, &params, &state)?;
        }
        if opts.halt_after == Some(step) {
            return Err(Error::Halted { step });
        }
        if stopped_early {
            tracing::info!(
                step,
                best_step = best.map(|b| b.0),
                patience = config.eval.patience,
                "stopping early: no better validation loss"
            );
            break;
        }
    }

    let best_dir = out.join(BEST_DIR);
    let adapter_is_best = config.eval.keep_best && best_dir.is_dir();
    if adapter_is_best {
        let entries = std::fs::read_dir(&best_dir).map_err(|e| Error::io(&best_dir, e))?;
        for entry in entries {
            let src = entry.map_err(|e| Error::io(&best_dir, e))?.path();
            let Some(name) = src.file_name() else {
                continue;
            };
            let tmp = out.join(format!(".{}.tmp", name.to_string_lossy()));
            std::fs::copy(&src, &tmp).map_err(|e| Error::io(&tmp, e))?;
            std::fs::rename(&tmp, out.join(name)).map_err(|e| Error::io(out.join(name), e))?;
        }
    } else {
        trainable.save_final(out, &base, &base_dir, &config.run.model, &params)?;
    }
    let summary = RunSummary {
        steps: step,
        final_loss: last_loss,
        initial_val_loss,
        final_val_loss: last_val,
        duration_secs: started.elapsed().as_secs_f64(),
        dataset_fingerprint: fingerprint,
        base_model_hash,
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
        peak_rss_bytes: peak_rss_bytes(),
        best,
        stopped_early,
        adapter_is_best,
    };
    let text = serialised(&out.join(RUN_FILE), serde_json::to_string_pretty(&summary))?;
    write_text(&out.join(RUN_FILE), &text)?;
    Ok(summary)
}

/// Fills `dir` through a temporary sibling folder and a rename, replacing what was there.
fn atomic_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.with_file_name(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    fill(&tmp)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
}

/// Warns when the dataset's token counts came from another tokenizer than the model's:
/// its length filter then does not match what training sees.
fn check_tokenizer(data: &Path, tokenizer: &ctiforge_model::CtiTokenizer) {
    use sha2::Digest;
    let Ok(manifest) = ctiforge_data_prep::Manifest::read(data) else {
        return;
    };
    let Some(recorded) = manifest.tokenizer else {
        return;
    };
    let ours = std::fs::read(tokenizer.tokenizer_path())
        .map(|b| format!("{:x}", sha2::Sha256::digest(&b)))
        .unwrap_or_default();
    if !ours.is_empty() && !recorded.contains(&ours) {
        tracing::warn!(
            dataset = %data.display(),
            dataset_tokenizer = %recorded,
            model_tokenizer = %tokenizer.tokenizer_path().display(),
            "the dataset's token counts and length filter used another tokenizer than this \
             model's; rows may be truncated differently than prep reported"
        );
    }
}

fn add(acc: &mut [f32], g: &[f32]) {
    for (a, b) in acc.iter_mut().zip(g) {
        *a += b;
    }
}

/// The permutation of example indices for `epoch` (ChaCha8 seeded from seed and epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(splitmix(seed ^ splitmix(epoch)));
    order.shuffle(&mut rng);
    order
}

/// The example indices of optimizer step `step` (0-based) in the order the trainer feeds
/// them: the step's slice of its epoch's [`epoch_order`], `batch` long (shorter at an
/// epoch's end), split into micro-batches in this order.
pub fn step_batch(n: usize, seed: u64, batch: usize, step: u64) -> Vec<usize> {
    let steps_per_epoch = n.div_ceil(batch).max(1) as u64;
    let order = epoch_order(n, seed, step / steps_per_epoch);
    let first = ((step % steps_per_epoch) as usize) * batch;
    order[first.min(n)..(first + batch).min(n)].to_vec()
}

/// Writes the token ids of the first `steps` optimizer steps in the trainer's order as
/// JSON lines, so that a reference implementation (Hugging Face PEFT in
/// `ci/peft_reference.py`) can train on exactly the same micro-batches. One line per
/// example: `{"step": s, "micro_batch": k, "tokens": [...], "loss_from": i}`, with `step`
/// 0-based and `loss_from` as in [`Example`].
///
/// # Errors
/// The file cannot be written.
pub fn write_step_rows(
    path: &Path,
    examples: &[Example],
    seed: u64,
    batch: &crate::config::BatchConfig,
    steps: u64,
) -> Result<()> {
    let mut text = String::new();
    for step in 0..steps {
        let rows = step_batch(examples.len(), seed, batch.batch, step);
        for (k, chunk) in rows.chunks(batch.micro_batch).enumerate() {
            for &i in chunk {
                let line = serde_json::json!({
                    "step": step,
                    "micro_batch": k,
                    "tokens": examples[i].tokens,
                    "loss_from": examples[i].loss_from,
                });
                text.push_str(&line.to_string());
                text.push('\n');
            }
        }
    }
    write_text(path, &text)
}

/// `sum(weight * -log p(target))` over the micro-batch, times `scale`.
fn weighted_loss(model: &CausalLm, mb: &MicroBatch, scale: f32) -> Result<Tensor<1>> {
    let (b, t) = (mb.forward.batch, mb.forward.seq);
    let device = model.device();
    let logits = model.forward(&mb.forward, None)?; // [b, t, vocab]
    let targets =
        Tensor::<3, Int>::from_data(TensorData::new(mb.targets.clone(), [b, t, 1]), &device);
    let w: Vec<f32> = mb.weights.iter().map(|w| w * scale).collect();
    let w = Tensor::<3>::from_data(TensorData::new(w, [b, t, 1]), &device);
    let picked = log_softmax(logits, 2).gather(2, targets); // [b, t, 1]
    Ok((picked * w).sum().neg())
}

/// Mean token loss of `examples` (no gradients).
///
/// # Errors
/// Forward failures.
pub fn evaluate(
    model: &CausalLm,
    examples: &[Example],
    micro: usize,
    pad: u32,
    window: Option<usize>,
) -> Result<f64> {
    let model = model.valid();
    let refs: Vec<&Example> = examples.iter().collect();
    let (mut sum, mut count) = (0.0f64, 0usize);
    for chunk in refs.chunks(micro.max(1)) {
        let mb = collate(chunk, pad, window);
        sum += f64::from(to_host(weighted_loss(&model, &mb, 1.0)?)?[0]);
        count += mb.loss_tokens;
    }
    Ok(sum / count.max(1) as f64)
}

fn to_params(adapters: &[AdapterValues]) -> Vec<ParamState> {
    adapters
        .iter()
        .flat_map(|a| {
            [
                ParamState::new(
                    peft_name(a.layer, a.target, LoraMatrix::A),
                    a.lora_a.clone(),
                ),
                ParamState::new(
                    peft_name(a.layer, a.target, LoraMatrix::B),
                    a.lora_b.clone(),
                ),
            ]
        })
        .collect()
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    ctiforge_model::fsutil::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// A serialisation result, with a failure reported against the file it was meant for
/// (an empty file must never stand in for a config, summary or checkpoint state).
fn serialised<E: std::fmt::Display>(
    path: &Path,
    text: std::result::Result<String, E>,
) -> Result<String> {
    text.map_err(|e| {
        Error::io(
            path,
            std::io::Error::other(format!("cannot serialise: {e}")),
        )
    })
}

fn append_metrics(path: &Path, m: &StepMetrics) -> Result<()> {
    let line = serialised(path, serde_json::to_string(m))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(path, e))
}

/// Keeps only the metric lines of steps `<= step` (what a resumed run has not redone).
fn truncate_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<StepMetrics>(l).is_ok_and(|m| m.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    write_text(path, &kept)
}

/// Reads every metrics line of a run.
///
/// # Errors
/// The file is unreadable or a line is not a metrics object.
pub fn read_metrics(run: &Path) -> Result<Vec<StepMetrics>> {
    let path = run.join(METRICS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Resume {
                path: path.clone(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

fn checkpoint_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a checkpoint folder under a temporary name, renames it into place, and removes
/// all but the newest `keep_last`.
fn write_checkpoint(
    out: &Path,
    config: &TrainConfig,
    trainable: &Trainable,
    params: &[ParamState],
    state: &TrainerState,
) -> Result<()> {
    let root = out.join(CHECKPOINTS_DIR);
    let final_dir = root.join(checkpoint_name(state.step));
    let tmp = root.join(format!(".{}.partial", checkpoint_name(state.step)));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    trainable.save_checkpoint(&tmp, params, &config.run.model)?;
    let mut moments = BTreeMap::new();
    for p in params {
        let n = p.value.len();
        moments.insert(
            format!("{}.exp_avg", p.name),
            HostTensor {
                data: p.exp_avg.clone(),
                shape: vec![n],
            },
        );
        moments.insert(
            format!("{}.exp_avg_sq", p.name),
            HostTensor {
                data: p.exp_avg_sq.clone(),
                shape: vec![n],
            },
        );
    }
    write_safetensors(&tmp.join(OPTIMIZER_FILE), &moments, SaveDtype::F32)?;
    write_text(
        &tmp.join(STATE_FILE),
        &serialised(&tmp.join(STATE_FILE), serde_json::to_string_pretty(state))?,
    )?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).map_err(|e| Error::io(&final_dir, e))?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io(&final_dir, e))?;
    let mut all = list_checkpoints(out)?;
    while all.len() > config.checkpoint.keep_last {
        let old = all.remove(0);
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

fn list_checkpoints(out: &Path) -> Result<Vec<PathBuf>> {
    let root = out.join(CHECKPOINTS_DIR);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(Vec::new());
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
                && p.join(STATE_FILE).is_file()
        })
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The newest complete checkpoint of a run folder.
///
/// # Errors
/// The checkpoints folder cannot be listed.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    Ok(list_checkpoints(out)?.pop())
}

fn read_checkpoint(dir: &Path, trainable: &Trainable) -> Result<(Vec<ParamState>, TrainerState)> {
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| Error::Resume {
        path: state_path.clone(),
        message: format!("not a trainer state: {e}"),
    })?;
    let moments = Checkpoint::open_files(&[dir.join(OPTIMIZER_FILE)])?;
    let mut params = Vec::new();
    for (name, value) in trainable.load_checkpoint(dir)? {
        let n = value.len();
        let mut p = ParamState::new(name.clone(), value);
        p.exp_avg = moments.read_f32(&format!("{name}.exp_avg"), &[n])?;
        p.exp_avg_sq = moments.read_f32(&format!("{name}.exp_avg_sq"), &[n])?;
        params.push(p);
    }
    Ok((params, state))
}

/// SHA-256 over `config.json`'s bytes and the weight files' names and sizes (cheap for
/// multi-GB checkpoints, and changes whenever the weights are replaced).
fn model_hash(dir: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let cfg = dir.join("config.json");
    h.update(std::fs::read(&cfg).map_err(|e| Error::io(&cfg, e))?);
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().ok()?.len();
            name.ends_with(".safetensors").then_some((name, size))
        })
        .collect();
    files.sort();
    for (name, size) in files {
        h.update(name.as_bytes());
        h.update(size.to_le_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Peak resident set size from `/proc/self/status` (`VmHWM`), on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
