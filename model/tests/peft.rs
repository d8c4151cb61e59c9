//! PEFT compatibility of ctiforge's LoRA adapter folders, against Hugging Face `peft` run by
//! `ci/peft_reference.py` on the bundled aidreams260K Llama: an adapter ctiforge writes must
//! give the same logits when PEFT loads it (installed and after `merge_and_unload`, whose
//! weights must equal `merge_to_folder`'s), and an adapter PEFT writes must give PEFT's
//! logits when ctiforge applies it. `#[ignore]`d for plain `cargo test`; `cargo xtask ci`
//! installs the reference and runs them with `CTIFORGE_REF_PYTHON` set.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ctiforge_model::adapter::{apply_adapter, load_adapter, merge_to_folder, save_model_adapter};
use ctiforge_model::lora::{
    AdapterValues, LoraConfig, LoraTarget, init_adapters, install_adapters, merge_adapters,
};
use ctiforge_model::weights::{Checkpoint, SINGLE_FILE};
use ctiforge_model::{Device, LoadedModel};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The largest absolute logit difference allowed in f32 (as the transformers parity tests).
const TOLERANCE: f32 = 1e-4;
/// The largest absolute difference allowed between merged weights.
const WEIGHT_TOLERANCE: f32 = 1e-5;
/// Adapted logits must move at least this far from the base, or the test proves nothing.
const MIN_EFFECT: f32 = 1e-2;

fn reference(args: &[&str]) -> serde_json::Value {
    let python = std::env::var("CTIFORGE_REF_PYTHON").expect(
        "CTIFORGE_REF_PYTHON is not set: run these tests through `cargo xtask ci`, which \
         creates the reference environment (ci/setup-reference.sh)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/peft_reference.py");
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run the PEFT reference script");
    assert!(
        out.status.success(),
        "PEFT reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reference JSON")
}

/// A fixed, varied token sequence inside aidreams260K's 512-token vocabulary.
fn tokens(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 11) % 509).collect()
}

fn ids_arg(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temporary path")
}

fn base() -> LoadedModel {
    LoadedModel::load(&common::aidreams(), &Device::flex()).expect("load aidreams260K")
}

/// Largest |ours - theirs| over every position and vocabulary entry; panics naming the
/// first position whose row has another length.
fn max_logit_diff(what: &str, ours: &[Vec<f32>], theirs: &serde_json::Value) -> f32 {
    let theirs = theirs.as_array().expect("logit rows");
    assert_eq!(ours.len(), theirs.len(), "{what}: number of positions");
    let mut max_diff = 0.0f32;
    let mut worst = (0, 0);
    for (pos, (row, reference_row)) in ours.iter().zip(theirs).enumerate() {
        let reference_row = reference_row.as_array().expect("row");
        assert_eq!(
            reference_row.len(),
            row.len(),
            "{what}: vocab size at position {pos}"
        );
        for (tok, (a, b)) in row.iter().zip(reference_row).enumerate() {
            let d = (a - b.as_f64().expect("float") as f32).abs();
            if d > max_diff {
                max_diff = d;
                worst = (pos, tok);
            }
        }
    }
    assert!(
        max_diff <= TOLERANCE,
        "{what}: max |logit diff| {max_diff:e} > {TOLERANCE:e} at position {}, token {}",
        worst.0,
        worst.1
    );
    max_diff
}

/// Largest |a - b| between two logit tables of the same shape.
fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `model.layers.{i}.{self_attn|mlp}.{proj}` of every adapted projection, sorted.
fn module_names(config: &LoraConfig, n_layers: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..n_layers)
        .filter(|&i| config.adapts_layer(i))
        .flat_map(|i| {
            config.targets.iter().map(move |t| {
                let group = match t {
                    LoraTarget::Q | LoraTarget::K | LoraTarget::V | LoraTarget::O => "self_attn",
                    LoraTarget::Gate | LoraTarget::Up | LoraTarget::Down => "mlp",
                };
                format!("model.layers.{i}.{group}.{t}")
            })
        })
        .collect();
    out.sort();
    out
}

/// Checks that PEFT adapted exactly the modules `config` names, each scaled as ours.
fn assert_same_modules(config: &LoraConfig, n_layers: usize, reference: &serde_json::Value) {
    let theirs: Vec<String> = reference["lora_modules"]
        .as_array()
        .expect("lora_modules")
        .iter()
        .map(|v| v.as_str().expect("name").to_owned())
        .collect();
    assert_eq!(
        theirs,
        module_names(config, n_layers),
        "PEFT adapted other modules than the config names"
    );
    for (name, s) in reference["scaling"].as_object().expect("scaling") {
        let s = s.as_f64().expect("float");
        assert!(
            (s - config.scaling()).abs() < 1e-9,
            "{name}: PEFT scales by {s}, ctiforge by {}",
            config.scaling()
        );
    }
}

/// Fresh adapters with B (zero after init) replaced by seeded values in [-0.5, 0.5).
fn random_adapters(
    model: &ctiforge_model::transformer::CausalLm,
    config: &LoraConfig,
    seed: u64,
) -> Vec<AdapterValues> {
    let mut adapters = init_adapters(model, config, seed).expect("init adapters");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    for ad in &mut adapters {
        for b in &mut ad.lora_b {
            *b = rng.random_range(-0.5..0.5);
        }
    }
    adapters
}

/// Every tensor of the `model.safetensors` in each folder, by name.
fn read_all(dir: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let ckpt = Checkpoint::open_files(&[dir.join(SINGLE_FILE)]).expect("open safetensors");
    ckpt.names()
        .into_iter()
        .map(|name| {
            let (shape, _) = ckpt.info(name).expect("info");
            let data = ckpt.read_f32(name, &shape).expect("read");
            (name.to_owned(), (shape, data))
        })
        .collect()
}

/// Compares two merged checkpoints tensor by tensor; returns the largest difference.
fn assert_same_weights(ours: &Path, peft: &Path) -> f32 {
    let (ours, theirs) = (read_all(ours), read_all(peft));
    let our_names: Vec<&String> = ours.keys().collect();
    let their_names: Vec<&String> = theirs.keys().collect();
    assert_eq!(
        our_names, their_names,
        "merge_to_folder and PEFT's merge_and_unload wrote other tensor names"
    );
    let mut max_diff = 0.0f32;
    for (name, (shape, data)) in &ours {
        let (their_shape, their_data) = &theirs[name];
        assert_eq!(shape, their_shape, "{name}: shape");
        for (k, (a, b)) in data.iter().zip(their_data).enumerate() {
            let d = (a - b).abs();
            assert!(
                d <= WEIGHT_TOLERANCE,
                "{name}[{k}]: merge_to_folder {a} vs PEFT merge_and_unload {b}"
            );
            max_diff = max_diff.max(d);
        }
    }
    max_diff
}

/// Writes an adapter with ctiforge, loads it with PEFT, and compares logits (installed and
/// merged) and the merged weights.
fn ctiforge_to_peft(config: LoraConfig, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let loaded = base();
    let n_layers = loaded.model.layers.len();
    let ids = tokens(30);
    let base_logits = loaded.model.logits(&ids).expect("base logits");
    let adapters = random_adapters(&loaded.model, &config, seed);
    let adapted = install_adapters(loaded.model, &config, &adapters).expect("install");
    let ours = adapted.logits(&ids).expect("adapted logits");
    assert!(
        max_abs_diff(&ours, &base_logits) > MIN_EFFECT,
        "the adapter barely changes the logits"
    );

    let adapter_dir = dir.path().join("adapter");
    let base_dir = common::aidreams();
    save_model_adapter(&adapter_dir, &adapted, &config, path_arg(&base_dir)).expect("save adapter");
    let ours_merged = merge_adapters(adapted).logits(&ids).expect("merged logits");
    let our_merge_dir = dir.path().join("merged-ctiforge");
    merge_to_folder(&base_dir, &adapter_dir, &our_merge_dir).expect("merge_to_folder");
    let peft_merge_dir = dir.path().join("merged-peft");

    let theirs = reference(&[
        "apply",
        path_arg(&base_dir),
        path_arg(&adapter_dir),
        "--tokens",
        &ids_arg(&ids),
        "--merged-out",
        path_arg(&peft_merge_dir),
    ]);
    assert_same_modules(&config, n_layers, &theirs);
    let installed = max_logit_diff("PeftModel vs installed adapter", &ours, &theirs["logits"]);
    let merged = max_logit_diff(
        "PEFT merge_and_unload vs merge_adapters",
        &ours_merged,
        &theirs["merged_logits"],
    );
    let cross = max_logit_diff("PeftModel vs merged model", &ours_merged, &theirs["logits"]);
    let weights = assert_same_weights(&our_merge_dir, &peft_merge_dir);
    eprintln!(
        "ctiforge -> peft {} (r {}, alpha {}, rslora {}, layers {:?}): max |logit diff| \
         installed {installed:e}, merged {merged:e}, merged vs PeftModel {cross:e}; \
         max |merged weight diff| {weights:e}",
        theirs["peft_version"], config.rank, config.alpha, config.use_rslora, config.layers
    );
}

/// Makes an adapter with PEFT, applies it with ctiforge, and compares logits.
fn peft_to_ctiforge(targets: &[LoraTarget], layers: Option<&[usize]>, rslora: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let adapter_dir: PathBuf = dir.path().join("adapter");
    let base_dir = common::aidreams();
    let ids = tokens(30);
    let target_arg = targets
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let layer_arg = layers.map(|l| l.iter().map(usize::to_string).collect::<Vec<_>>().join(","));
    let mut args = vec![
        "make".to_owned(),
        path_arg(&base_dir).to_owned(),
        path_arg(&adapter_dir).to_owned(),
        "--tokens".to_owned(),
        ids_arg(&ids),
        "--rank".to_owned(),
        "4".to_owned(),
        "--alpha".to_owned(),
        "8".to_owned(),
        "--targets".to_owned(),
        target_arg,
        "--seed".to_owned(),
        "7".to_owned(),
    ];
    if let Some(l) = layer_arg {
        args.extend(["--layers".to_owned(), l]);
    }
    if rslora {
        args.push("--rslora".to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let theirs = reference(&args);

    let loaded = base();
    let n_layers = loaded.model.layers.len();
    let (config, values) = load_adapter(&adapter_dir, &loaded.model).expect("load PEFT adapter");
    let mut want_targets = targets.to_vec();
    want_targets.sort();
    assert_eq!(config.targets, want_targets, "target_modules");
    assert_eq!(config.layers.as_deref(), layers, "layers_to_transform");
    assert_eq!(
        (config.rank, config.alpha, config.use_rslora),
        (4, 8.0, rslora)
    );
    assert_eq!(values.len(), module_names(&config, n_layers).len());
    assert_same_modules(&config, n_layers, &theirs);

    let base_logits = loaded.model.logits(&ids).expect("base logits");
    let installed = install_adapters(loaded.model.clone(), &config, &values)
        .expect("install")
        .logits(&ids)
        .expect("logits");
    assert!(
        max_abs_diff(&installed, &base_logits) > MIN_EFFECT,
        "PEFT's random adapter barely changes the logits"
    );
    let applied = apply_adapter(loaded.model, &adapter_dir)
        .expect("apply PEFT adapter")
        .logits(&ids)
        .expect("logits");
    let d_installed = max_logit_diff("installed PEFT adapter", &installed, &theirs["logits"]);
    let d_applied = max_logit_diff("apply_adapter (merged)", &applied, &theirs["logits"]);
    eprintln!(
        "peft {} -> ctiforge (targets {target_list}, layers {layers:?}, rslora {rslora}): \
         max |logit diff| installed {d_installed:e}, applied {d_applied:e}",
        theirs["peft_version"],
        target_list = config
            .targets
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
}

fn lora(alpha: f64, use_rslora: bool, layers: Option<Vec<usize>>) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha,
        dropout: 0.0,
        targets: LoraTarget::ALL.to_vec(),
        use_rslora,
        layers,
    }
}

#[test]
#[ignore = "needs the PEFT reference (cargo xtask ci)"]
fn ctiforge_adapter_loads_in_peft() {
    ctiforge_to_peft(lora(12.0, false, Some(vec![0, 2])), 21);
}

#[test]
#[ignore = "needs the PEFT reference (cargo xtask ci)"]
fn ctiforge_rslora_adapter_on_every_layer_loads_in_peft() {
    ctiforge_to_peft(lora(6.0, true, None), 22);
}

#[test]
#[ignore = "needs the PEFT reference (cargo xtask ci)"]
fn peft_adapter_loads_in_ctiforge() {
    peft_to_ctiforge(
        &[
            LoraTarget::Q,
            LoraTarget::V,
            LoraTarget::Gate,
            LoraTarget::Down,
        ],
        Some(&[1, 3]),
        false,
    );
}

#[test]
#[ignore = "needs the PEFT reference (cargo xtask ci)"]
fn peft_rslora_adapter_on_every_layer_loads_in_ctiforge() {
    peft_to_ctiforge(&LoraTarget::ALL, None, true);
}
