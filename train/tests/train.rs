//! End-to-end training on a TRAM dataset prepared from the bundled sources with the bundled
//! tiny Llama (aidreams260K): the loss falls, a killed run resumes to the same losses, the
//! base weights stay bit-identical, the shipped recipe parses, and sequence packing changes
//! the padding but not the losses.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ctiforge_data_prep::config::PrepConfig;
use ctiforge_data_prep::{Options, prepare};
use ctiforge_model::weights::Checkpoint;
use ctiforge_train::data::{Example, collate, collate_packed, load_split};
use ctiforge_train::trainer::epoch_order;
use ctiforge_train::{Error, RunOptions, TrainConfig, read_metrics, train};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The TRAM technique dataset (report spans + negatives), prepared once per test binary.
fn dataset() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = root().join("configs/prep/tram-techniques.toml");
        let text = std::fs::read_to_string(&path).expect("recipe");
        let mut doc: toml::Table = toml::from_str(&text).expect("toml");
        let sources = doc["sources"].as_array_mut().expect("sources");
        sources.retain(|s| s["name"].as_str() != Some("annoctr_linked"));
        let cfg =
            PrepConfig::from_toml(&toml::to_string(&doc).expect("ser"), &path).expect("recipe");
        let out = tmp.path().join("tram");
        let opts = Options {
            base_dir: root(),
            force: false,
        };
        prepare(&cfg, &out, &opts).expect("prepare");
        (tmp, out)
    })
    .1
}

fn config(sets: &[&str]) -> TrainConfig {
    let path = root().join("configs/train/tram-lora.toml");
    let mut all: Vec<String> = vec![
        format!(
            "run.model={:?}",
            root()
                .join("datasets/models/aidreams260K")
                .display()
                .to_string()
        ),
        format!("run.data={:?}", dataset().display().to_string()),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    TrainConfig::from_file(&path, &all).expect("config")
}

#[test]
fn shipped_recipes_parse() {
    for entry in std::fs::read_dir(root().join("configs/train")).expect("ls") {
        let path = entry.expect("entry").path();
        TrainConfig::from_file(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn killed_run_resumes_to_the_same_losses_and_base_stays_frozen() {
    let sets = [
        "run.max_steps=6",
        "batch.batch=4",
        "batch.micro_batch=2",
        "batch.max_seq_len=96",
        "checkpoint.every_steps=2",
        "eval.every_steps=3",
        "eval.max_examples=8",
        "schedule.warmup_steps=2",
    ];
    let cfg = config(&sets);
    let base = root().join("datasets/models/aidreams260K/model.safetensors");
    let before = std::fs::read(&base).expect("base");
    let tmp = tempfile::tempdir().expect("tempdir");

    let full = tmp.path().join("full");
    let summary = train(&cfg, &full, &RunOptions::default()).expect("train");
    assert_eq!(summary.steps, 6);
    let want = read_metrics(&full).expect("metrics");
    assert_eq!(want.len(), 6);
    assert!(want.iter().all(|m| m.loss.is_finite() && m.grad_norm > 0.0));
    assert_eq!(want[0].lr, 0.0, "the first warm-up step runs at lr 0");

    // Kill after step 5: the newest checkpoint is step 4, step 5 is redone on resume.
    let killed = tmp.path().join("killed");
    let halt = RunOptions {
        resume: false,
        halt_after: Some(5),
        ..RunOptions::default()
    };
    assert!(matches!(
        train(&cfg, &killed, &halt),
        Err(Error::Halted { step: 5 })
    ));
    let resume = RunOptions {
        resume: true,
        halt_after: None,
        ..RunOptions::default()
    };
    train(&cfg, &killed, &resume).expect("resume");
    let got = read_metrics(&killed).expect("metrics");
    let losses = |m: &[ctiforge_train::StepMetrics]| -> Vec<(u64, f64, f64)> {
        m.iter().map(|m| (m.step, m.loss, m.grad_norm)).collect()
    };
    assert_eq!(losses(&got), losses(&want));
    let a = Checkpoint::open_files(&[full.join("adapter_model.safetensors")]).expect("a");
    let b = Checkpoint::open_files(&[killed.join("adapter_model.safetensors")]).expect("b");
    for name in a.names() {
        let (shape, _) = a.info(name).expect("info");
        assert_eq!(
            a.read_f32(name, &shape).expect("a"),
            b.read_f32(name, &shape).expect("b")
        );
    }
    // keep_last = 2 of the checkpoints at steps 2, 4, 6.
    let ckpts: Vec<_> = std::fs::read_dir(killed.join("checkpoints"))
        .expect("ls")
        .collect();
    assert_eq!(ckpts.len(), 2);

    assert_eq!(
        std::fs::read(&base).expect("base"),
        before,
        "base weights changed"
    );
}

#[test]
fn tram_validation_loss_falls() {
    let cfg = config(&[
        "run.max_steps=30",
        "batch.batch=8",
        "batch.micro_batch=8",
        "batch.max_seq_len=128",
        "eval.every_steps=0",
        "eval.max_examples=32",
        "checkpoint.every_steps=0",
        "schedule.warmup_steps=3",
        "optim.lr=5e-3",
    ]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let summary = train(&cfg, tmp.path(), &RunOptions::default()).expect("train");
    eprintln!("{summary:?}");
    assert!(
        summary.final_val_loss < summary.initial_val_loss - 0.5,
        "validation loss {} -> {}",
        summary.initial_val_loss,
        summary.final_val_loss
    );
}

#[test]
fn early_stopping_keeps_the_best_adapter() {
    // A learning rate high enough that validation loss turns up after a few evaluations.
    let cfg = config(&[
        "run.max_steps=30",
        "batch.batch=8",
        "batch.micro_batch=8",
        "batch.max_seq_len=128",
        "eval.every_steps=2",
        "eval.max_examples=32",
        "eval.patience=2",
        "eval.keep_best=true",
        "optim.lr=0.3",
        "schedule.decay=\"constant\"",
        "schedule.warmup_steps=0",
        "checkpoint.every_steps=0",
    ]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let summary = train(&cfg, tmp.path(), &RunOptions::default()).expect("train");
    let (best_step, best_loss) = summary.best.expect("a best validation");
    assert!(
        summary.stopped_early && summary.adapter_is_best,
        "{summary:?}"
    );
    assert!(
        summary.steps < 30 && best_step < summary.steps,
        "{summary:?}"
    );
    let metrics = read_metrics(tmp.path()).expect("metrics");
    assert_eq!(metrics.len() as u64, summary.steps);
    let vals: Vec<f64> = metrics.iter().filter_map(|m| m.val_loss).collect();
    assert!(vals.iter().all(|v| *v >= best_loss), "{vals:?}");
    // Two validations after the best one, none better.
    assert!(
        vals[vals.len() - 2..].iter().all(|v| *v > best_loss),
        "{vals:?}"
    );
    let name = "adapter_model.safetensors";
    assert_eq!(
        std::fs::read(tmp.path().join(name)).expect("run adapter"),
        std::fs::read(tmp.path().join("best").join(name)).expect("best adapter")
    );
}

#[test]
fn an_empty_resume_folder_is_explained() {
    let cfg = config(&["run.max_steps=1"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        resume: true,
        halt_after: None,
        ..RunOptions::default()
    };
    let err = train(&cfg, tmp.path(), &opts).expect_err("nothing to resume");
    assert!(err.to_string().contains("no checkpoint"), "{err}");
}

/// The CTI prose corpus (continued pre-training rows), prepared once per test binary.
fn corpus() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = root().join("configs/prep/cti-corpus.toml");
        let text = std::fs::read_to_string(&path).expect("recipe");
        let cfg = PrepConfig::from_toml(&text, &path).expect("recipe");
        let out = tmp.path().join("corpus");
        let opts = Options {
            base_dir: root(),
            force: false,
        };
        prepare(&cfg, &out, &opts).expect("prepare");
        (tmp, out)
    })
    .1
}

#[test]
fn full_training_resumes_exactly_and_writes_a_base_for_lora() {
    let model = root().join("datasets/models/aidreams260K");
    let sets: Vec<String> = vec![
        format!("run.model={:?}", model.display().to_string()),
        format!("run.data={:?}", corpus().display().to_string()),
        "run.max_steps=6".into(),
        "batch.batch=4".into(),
        "batch.micro_batch=4".into(),
        "batch.max_seq_len=64".into(),
        "eval.every_steps=0".into(),
        "eval.max_examples=16".into(),
        "checkpoint.every_steps=2".into(),
        "schedule.warmup_steps=1".into(),
    ];
    let cfg = TrainConfig::from_file(&root().join("configs/train/cti-cpt.toml"), &sets)
        .expect("the shipped continued-pre-training recipe");
    let tmp = tempfile::tempdir().expect("tempdir");
    let full = tmp.path().join("full");
    let summary = train(&cfg, &full, &RunOptions::default()).expect("train");
    assert!(
        summary.final_val_loss < summary.initial_val_loss,
        "{summary:?}"
    );

    // Killed after step 3 and resumed from the step-2 checkpoint: the same losses and
    // the same final weights.
    let killed = tmp.path().join("killed");
    let halt = RunOptions {
        halt_after: Some(3),
        ..RunOptions::default()
    };
    assert!(matches!(
        train(&cfg, &killed, &halt),
        Err(Error::Halted { step: 3 })
    ));
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    train(&cfg, &killed, &resume).expect("resume");
    let losses = |dir: &Path| -> Vec<(u64, f64)> {
        read_metrics(dir)
            .expect("metrics")
            .iter()
            .map(|m| (m.step, m.loss))
            .collect()
    };
    assert_eq!(losses(&killed), losses(&full));
    let a = Checkpoint::open_files(&[full.join("model.safetensors")]).expect("a");
    let b = Checkpoint::open_files(&[killed.join("model.safetensors")]).expect("b");
    let base = Checkpoint::open_files(&[model.join("model.safetensors")]).expect("base");
    let mut changed = 0;
    for name in a.names() {
        let (shape, _) = a.info(name).expect("info");
        let wa = a.read_f32(name, &shape).expect("a");
        assert_eq!(wa, b.read_f32(name, &shape).expect("b"), "{name}");
        if wa != base.read_f32(name, &shape).expect("base") {
            changed += 1;
        }
    }
    assert_eq!(changed, a.names().len(), "every weight trained");

    // The run folder is a model folder: a LoRA run takes it as its base.
    let lora = config(&[
        &format!("run.model={:?}", full.display().to_string()),
        "run.max_steps=2",
        "batch.batch=4",
        "batch.micro_batch=4",
        "batch.max_seq_len=96",
        "eval.every_steps=0",
        "eval.max_examples=8",
        "checkpoint.every_steps=0",
    ]);
    let s = train(&lora, &tmp.path().join("lora"), &RunOptions::default()).expect("lora");
    assert_eq!(s.steps, 2);
}

#[test]
fn packing_gives_the_same_losses_with_less_padding() {
    // Dropout off: its masks are drawn over the micro-batch's shape, which packing changes.
    let sets = [
        "run.max_steps=4",
        "batch.batch=16",
        "batch.micro_batch=8",
        "batch.max_seq_len=256",
        "lora.dropout=0.0",
        "eval.every_steps=0",
        "eval.max_examples=8",
        "checkpoint.every_steps=0",
        "schedule.warmup_steps=0",
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = |packing: bool| {
        let mut all = sets.to_vec();
        let flag = format!("batch.packing={packing}");
        all.push(&flag);
        let cfg = config(&all);
        assert_eq!(cfg.batch.packing, packing);
        let out = tmp.path().join(flag);
        train(&cfg, &out, &RunOptions::default()).expect("train");
        read_metrics(&out).expect("metrics")
    };
    let (plain, packed) = (run(false), run(true));
    assert_eq!(plain.len(), 4);
    assert_eq!(packed.len(), 4);
    for (a, b) in plain.iter().zip(&packed) {
        let rel = |x: f64, y: f64| (x - y).abs() / x.abs().max(1e-12);
        eprintln!(
            "step {}: loss {:.7} / {:.7}, grad norm {:.6} / {:.6}",
            a.step, a.loss, b.loss, a.grad_norm, b.grad_norm
        );
        assert!(
            rel(a.loss, b.loss) < 1e-4 && rel(a.grad_norm, b.grad_norm) < 1e-3,
            "step {}: loss {} vs {}, grad norm {} vs {}",
            a.step,
            a.loss,
            b.loss,
            a.grad_norm,
            b.grad_norm
        );
    }

    // The same micro-batches, collated both ways: packing leaves fewer padding slots.
    let cfg = config(&sets);
    let model =
        ctiforge_model::LoadedModel::resolve(&cfg.run.model, &ctiforge_model::Device::flex())
            .expect("model");
    let tok = model.tokenizer().expect("tokenizer");
    let bs = &cfg.batch;
    let examples = load_split(&cfg.run.data, "train", tok, bs.max_seq_len, true).expect("data");
    let order = epoch_order(examples.len(), cfg.run.seed, 0);
    let (mut plain_pad, mut packed_pad, mut real) = (0, 0, 0);
    for chunk in order[..4 * bs.batch].chunks(bs.micro_batch) {
        let chunk: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
        let a = collate(&chunk, 0, None);
        let b = collate_packed(&chunk, bs.max_seq_len, 0, None);
        assert_eq!(
            (a.loss_tokens, a.input_tokens),
            (b.loss_tokens, b.input_tokens)
        );
        plain_pad += a.padded_tokens();
        packed_pad += b.padded_tokens();
        real += a.input_tokens;
    }
    eprintln!(
        "padding slots over 4 steps: {plain_pad} unpacked, {packed_pad} packed ({real} real)"
    );
    assert!(packed_pad < plain_pad, "{packed_pad} >= {plain_pad}");
}
