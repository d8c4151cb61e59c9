//! LoRA on a tiny random Llama: the adapter's gradients against central finite differences,
//! frozen base weights, a fresh adapter leaving the model unchanged, merging, and the PEFT
//! file layout round trip.

mod common;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ctiforge_model::adapter::{ADAPTER_CONFIG_FILE, load_adapter, merge_to_folder, save_adapter};
use ctiforge_model::lora::{
    AdapterValues, LoraConfig, LoraTarget, init_adapters, install_adapters, merge_adapters,
    read_adapters,
};
use ctiforge_model::transformer::{CausalLm, ForwardBatch, to_host};
use ctiforge_model::{Architecture, LoadedModel};

const TOKENS: [u32; 9] = [5, 17, 42, 99, 3, 250, 7, 64, 12];

fn config(targets: Vec<LoraTarget>) -> LoraConfig {
    LoraConfig {
        rank: 2,
        alpha: 4.0,
        dropout: 0.0,
        targets,
        use_rslora: false,
        layers: None,
    }
}

/// Mean next-token cross-entropy of `TOKENS` in f32.
fn loss(model: &CausalLm) -> Tensor<1> {
    let (inputs, targets) = (&TOKENS[..TOKENS.len() - 1], &TOKENS[1..]);
    let batch = ForwardBatch::single(inputs, None);
    let logits = model.forward(&batch, None).expect("forward"); // [1, t, vocab]
    let t = inputs.len();
    let ids: Vec<i64> = targets.iter().map(|&x| i64::from(x)).collect();
    let ids = Tensor::<3, Int>::from_data(TensorData::new(ids, [1, t, 1]), &model.device());
    let picked = log_softmax(logits, 2).gather(2, ids); // [1, t, 1]
    picked.mean().neg()
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(to_host(t).expect("host")[0])
}

/// Adapters with every entry non-zero, so that both factors get gradients.
fn random_adapters(model: &CausalLm, config: &LoraConfig, seed: u64) -> Vec<AdapterValues> {
    let mut adapters = init_adapters(model, config, seed).expect("init");
    for (k, ad) in adapters.iter_mut().enumerate() {
        for (j, b) in ad.lora_b.iter_mut().enumerate() {
            // A fixed, irregular pattern in [-0.3, 0.3].
            *b = (((j * 7 + k * 13) % 23) as f32 / 23.0 - 0.5) * 0.6;
        }
    }
    adapters
}

#[test]
fn adapter_gradients_match_central_finite_differences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::tiny_model(dir.path(), "m", Architecture::Llama, 11, &[]);
    let device = Device::flex().autodiff();
    let base = LoadedModel::load(&path, &device).expect("load").model;
    let cfg = config(LoraTarget::ALL.to_vec());
    let adapters = random_adapters(&base, &cfg, 3);
    let model = install_adapters(base.clone(), &cfg, &adapters).expect("install");

    let grads = loss(&model).backward();
    // The base stays frozen: no gradient reaches any base weight.
    let q = &model.layers[0].attn.q_proj;
    assert!(
        q.base.weight.val().grad(&grads).is_none(),
        "base weight got a gradient"
    );
    assert!(model.embed_tokens.weight.val().grad(&grads).is_none());

    // Check a spread of entries of A and B of several projections.
    // f32 throughout (the CPU backend computes in f32): with h = 1e-2 the rounding error of
    // a loss near ln(384) ~ 6 is ~6e-7 / (2h) ~ 3e-5 and the truncation error h^2 f'''/6 is
    // of the same order on this smooth tiny model, so 1e-3 absolute + 2% relative is ~30x
    // the expected error yet far below the gradients' own size (checked below).
    let h = 1e-2f32;
    let mut checked = 0;
    let mut largest = 0.0f64;
    for (k, ad) in adapters.iter().enumerate().step_by(3) {
        let proj = ctiforge_model::lora::projection(&model.layers[ad.layer], ad.target);
        let lora = proj.lora.as_ref().expect("adapter installed");
        let ga = to_host(lora.lora_a.val().grad(&grads).expect("grad A")).expect("host");
        let gb = to_host(lora.lora_b.val().grad(&grads).expect("grad B")).expect("host");
        for (is_a, grad, len) in [(true, &ga, ad.lora_a.len()), (false, &gb, ad.lora_b.len())] {
            for idx in [0, len / 3, len - 1] {
                let eval = |delta: f32| {
                    let mut moved = adapters.clone();
                    let m = if is_a {
                        &mut moved[k].lora_a
                    } else {
                        &mut moved[k].lora_b
                    };
                    m[idx] += delta;
                    let model = install_adapters(base.clone(), &cfg, &moved).expect("install");
                    scalar(loss(&model))
                };
                let fd = (eval(h) - eval(-h)) / (2.0 * f64::from(h));
                let g = f64::from(grad[idx]);
                largest = largest.max(g.abs());
                assert!(
                    (fd - g).abs() <= 1e-3 + 0.02 * g.abs(),
                    "layer {} {} {} [{idx}]: autodiff {g} vs finite difference {fd}",
                    ad.layer,
                    ad.target,
                    if is_a { "lora_a" } else { "lora_b" },
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 24, "checked only {checked} entries");
    assert!(
        largest > 1e-2,
        "gradients too small to test anything: max {largest}"
    );
}

#[test]
fn fresh_adapter_keeps_the_model_equal_and_merge_preserves_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::tiny_model(dir.path(), "m", Architecture::Mistral, 5, &[]);
    let device = Device::flex();
    let base = LoadedModel::load(&path, &device).expect("load").model;
    let want = base.logits(&TOKENS).expect("logits");
    let cfg = config(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Down]);
    let fresh = init_adapters(&base, &cfg, 9).expect("init");
    // A is Kaiming-uniform: inside +-1/sqrt(in) and not all zero; B is zero.
    for ad in &fresh {
        let bound = 1.0 / (ad.dims.1 as f32).sqrt();
        assert!(ad.lora_a.iter().all(|v| v.abs() <= bound));
        assert!(ad.lora_a.iter().any(|v| v.abs() > bound / 2.0));
        assert!(ad.lora_b.iter().all(|&v| v == 0.0));
    }
    let adapted = install_adapters(base.clone(), &cfg, &fresh).expect("install");
    assert_eq!(adapted.logits(&TOKENS).expect("logits"), want);

    let trained = random_adapters(&base, &cfg, 9);
    let adapted = install_adapters(base, &cfg, &trained).expect("install");
    let with_lora = adapted.logits(&TOKENS).expect("logits");
    assert_ne!(with_lora, want, "non-zero adapters must change the output");
    let merged = merge_adapters(adapted).logits(&TOKENS).expect("logits");
    for (a, b) in with_lora.iter().flatten().zip(merged.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn peft_layout_round_trips_and_merges_into_an_hf_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = common::tiny_model(dir.path(), "m", Architecture::Llama, 8, &[]);
    let device = Device::flex();
    let base = LoadedModel::load(&path, &device).expect("load").model;
    let mut cfg = config(vec![LoraTarget::K, LoraTarget::O, LoraTarget::Up]);
    cfg.layers = Some(vec![1]);
    let adapters = random_adapters(&base, &cfg, 4);
    let adapter_dir = dir.path().join("adapter");
    save_adapter(&adapter_dir, &cfg, &adapters, "m").expect("save");

    let (cfg2, loaded) = load_adapter(&adapter_dir, &base).expect("load adapter");
    assert_eq!(cfg2, cfg);
    assert_eq!(loaded, adapters);
    let adapted = install_adapters(base, &cfg2, &loaded).expect("install");
    assert_eq!(read_adapters(&adapted).expect("read"), adapters);
    let want = adapted.logits(&TOKENS).expect("logits");

    let text = std::fs::read_to_string(adapter_dir.join(ADAPTER_CONFIG_FILE)).expect("read");
    assert!(
        text.contains("\"lora_alpha\": 4.0") && text.contains("\"k_proj\""),
        "{text}"
    );

    let merged_dir = dir.path().join("merged");
    merge_to_folder(&path, &adapter_dir, &merged_dir).expect("merge");
    let merged = LoadedModel::load(&merged_dir, &device).expect("load merged");
    let got = merged.model.logits(&TOKENS).expect("logits");
    for (a, b) in want.iter().flatten().zip(got.iter().flatten()) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }

    // A config that does not match the file is refused with the file named.
    let mut wrong = cfg.clone();
    wrong.rank = 3;
    save_adapter(&dir.path().join("bad"), &wrong, &adapters, "m").expect("save");
    let err = load_adapter(&dir.path().join("bad"), &merged.model).expect_err("mismatch");
    assert!(err.to_string().contains("lora_A"), "{err}");
}
