//! The contract suite: one set of behaviours every `Registry` backend must show, run
//! unchanged against the embedded store (`tests/embedded.rs`) and a real MLflow server
//! (`tests/mlflow.rs`). Names carry a random suffix so runs can share a server.

// Test helpers: a failed unwrap is a failed test, as in `#[test]` bodies.
#![allow(dead_code, clippy::unwrap_used)]

pub mod proxy;

use std::path::{Path, PathBuf};

use ctiforge_registry::{
    AliasSwap, ArtifactRecord, Error, Gate, Metric, PageRequest, Registry, RunId, RunStatus, Tags,
    promote, pull,
};

/// A fresh name with a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A run with two uploaded artifacts (one nested) and the records.
pub fn run_with_artifacts(
    reg: &dyn Registry,
    scratch: &Path,
    experiment: &str,
) -> (RunId, Vec<ArtifactRecord>, Vec<Vec<u8>>) {
    let run = reg
        .create_run(experiment, "train", &tags(&[("stage", "train")]))
        .unwrap();
    let weights = bytes(300_000, 7);
    let config = br#"{"rank": 16}"#.to_vec();
    let w = write_file(scratch, &format!("{}/w.bin", run), &weights);
    let c = write_file(scratch, &format!("{}/c.json", run), &config);
    let a = reg
        .upload_artifact(&run, &w, "adapter/adapter_model.safetensors")
        .unwrap();
    let b = reg
        .upload_artifact(&run, &c, "adapter_config.json")
        .unwrap();
    (run, vec![a, b], vec![weights, config])
}

/// Runs: create, read back, params (write-once, limits), metrics (chunked), tags, status,
/// listing, unknown ids.
pub fn runs(reg: &dyn Registry) {
    let experiment = unique("exp");
    let run = reg
        .create_run(&experiment, "lora-r16", &tags(&[("dataset", "tram")]))
        .unwrap();
    let read = reg.get_run(&run).unwrap();
    assert_eq!(read.experiment, experiment);
    assert_eq!(read.name, "lora-r16");
    assert_eq!(read.status, RunStatus::Running);
    assert_eq!(read.tags, tags(&[("dataset", "tram")]));

    // Params: sent as strings, write-once, MLflow's limits.
    let params = tags(&[("train.lora.rank", "16"), ("train.lr", "0.0002")]);
    reg.log_params(&run, &params).unwrap();
    reg.log_params(&run, &tags(&[("train.lr", "0.0002")]))
        .unwrap();
    let conflict = reg
        .log_params(&run, &tags(&[("train.lr", "0.1")]))
        .unwrap_err();
    assert!(matches!(conflict, Error::Conflict(_)), "{conflict}");
    let long = "x".repeat(6001);
    assert!(matches!(
        reg.log_params(&run, &tags(&[("p", &long)])),
        Err(Error::Invalid { .. })
    ));
    let many: Tags = (0..150)
        .map(|i| (format!("p{i:03}"), i.to_string()))
        .collect();
    reg.log_params(&run, &many).unwrap();

    // Metrics: more than one log-batch call's worth.
    let metrics: Vec<Metric> = (0..2500u64)
        .map(|step| Metric {
            key: "loss".into(),
            value: 3.0 - step as f64 * 1e-3,
            step,
            timestamp_ms: 1_700_000_000_000 + step as i64,
        })
        .chain(std::iter::once(Metric::now(
            "technique.micro_f1",
            0.41,
            2499,
        )))
        .collect();
    reg.log_metrics(&run, &metrics).unwrap();
    let history = reg.metric_history(&run, "loss").unwrap();
    assert_eq!(history.len(), 2500);
    assert!(history.windows(2).all(|w| w[0].step < w[1].step));
    assert_eq!(history[10].value, 3.0 - 10.0 * 1e-3);
    let nan = reg
        .log_metrics(&run, &[Metric::now("loss", f64::NAN, 1)])
        .unwrap_err();
    assert!(matches!(nan, Error::Invalid { .. }), "{nan}");

    // Tags: more than one call's worth; reserved keys refused.
    let many_tags: Tags = (0..120)
        .map(|i| (format!("t{i:03}"), format!("v{i}")))
        .collect();
    reg.set_run_tags(&run, &many_tags).unwrap();
    reg.set_run_tags(&run, &tags(&[("dataset", "tram-v2")]))
        .unwrap();
    assert!(
        reg.set_run_tags(&run, &tags(&[("mlflow.user", "x")]))
            .is_err()
    );

    reg.finish_run(&run, RunStatus::Finished).unwrap();
    assert!(reg.finish_run(&run, RunStatus::Running).is_err());
    let read = reg.get_run(&run).unwrap();
    assert_eq!(read.status, RunStatus::Finished);
    assert_eq!(read.params.len(), 152);
    assert_eq!(read.params["train.lora.rank"], "16");
    assert_eq!(read.metrics["loss"], 3.0 - 2499.0 * 1e-3);
    assert_eq!(read.metrics["technique.micro_f1"], 0.41);
    assert_eq!(read.tags.len(), 121);
    assert_eq!(read.tags["dataset"], "tram-v2");

    // Listing, newest first, paged.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = reg.create_run(&experiment, "second", &Tags::new()).unwrap();
    let first_page = reg
        .list_runs(
            &experiment,
            &PageRequest {
                max_results: 1,
                token: None,
            },
        )
        .unwrap();
    assert_eq!(first_page.items.len(), 1);
    assert_eq!(first_page.items[0].id, second);
    let token = first_page.next_token.expect("a second page");
    let next = reg
        .list_runs(
            &experiment,
            &PageRequest {
                max_results: 1,
                token: Some(token),
            },
        )
        .unwrap();
    assert_eq!(next.items[0].id, run);
    assert!(
        reg.list_runs(&unique("no-such-exp"), &PageRequest::default())
            .unwrap()
            .items
            .is_empty()
    );

    let missing = RunId("0123456789abcdef0123456789abcdef".into());
    assert!(reg.get_run(&missing).unwrap_err().is_not_found());
}

/// Artifacts, versions (idempotent), listing with pages, tags, aliases, downloads, pull.
pub fn versions(reg: &dyn Registry, scratch: &Path) {
    let experiment = unique("exp");
    let model = unique("cti-llama");
    let (run, records, contents) = run_with_artifacts(reg, scratch, &experiment);
    let (sha, size) = sha256(&contents[0]);
    assert_eq!(
        (records[0].sha256.as_str(), records[0].size_bytes),
        (sha.as_str(), size)
    );
    let w = scratch.join(format!("{run}/w.bin"));
    for bad in ["../escape.bin", "/abs.bin", "a//b"] {
        assert!(
            matches!(
                reg.upload_artifact(&run, &w, bad),
                Err(Error::Invalid { .. })
            ),
            "{bad}"
        );
    }

    let v1 = reg
        .register_version(
            &model,
            &run,
            &records,
            &tags(&[("base", "llama-3.2-1b")]),
            "key-1",
        )
        .unwrap();
    assert_eq!(v1.version, "1");
    assert_eq!(v1.run_id, run);
    assert_eq!(v1.tags, tags(&[("base", "llama-3.2-1b")]));
    let mut sorted = records.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(v1.artifacts, sorted);

    // Idempotent: the same key returns the same version; another run with it conflicts.
    let again = reg
        .register_version(&model, &run, &records, &Tags::new(), "key-1")
        .unwrap();
    assert_eq!(again.version, "1");
    let (other_run, other_records, _) = run_with_artifacts(reg, scratch, &experiment);
    let conflict = reg.register_version(&model, &other_run, &other_records, &Tags::new(), "key-1");
    assert!(matches!(conflict, Err(Error::Conflict(_))), "{conflict:?}");

    // Only uploaded artifacts with the recorded size can be registered.
    let ghost = ArtifactRecord {
        path: "never-uploaded.bin".into(),
        sha256: sha.clone(),
        size_bytes: size,
    };
    let missing = reg
        .register_version(&model, &run, &[ghost], &Tags::new(), "key-ghost")
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let mut wrong_size = records[0].clone();
    wrong_size.size_bytes += 1;
    assert!(
        reg.register_version(&model, &run, &[wrong_size], &Tags::new(), "key-size")
            .is_err()
    );

    let v2 = reg
        .register_version(&model, &other_run, &other_records, &Tags::new(), "key-2")
        .unwrap();
    let v3 = reg
        .register_version(
            &model,
            &other_run,
            &other_records[1..],
            &Tags::new(),
            "key-3",
        )
        .unwrap();
    assert_eq!((v2.version.as_str(), v3.version.as_str()), ("2", "3"));
    assert!(reg.list_models().unwrap().contains(&model));

    // Pages, oldest first.
    let mut seen = Vec::new();
    let mut page = PageRequest {
        max_results: 2,
        token: None,
    };
    loop {
        let got = reg.list_versions(&model, &page).unwrap();
        assert!(got.items.len() <= 2);
        seen.extend(got.items.into_iter().map(|v| v.version));
        match got.next_token {
            Some(token) => page.token = Some(token),
            None => break,
        }
    }
    assert_eq!(seen, ["1", "2", "3"]);

    // Version tags.
    reg.set_version_tag(&model, "2", "eval.technique.micro_f1", "0.52")
        .unwrap();
    assert_eq!(
        reg.get_version(&model, "2").unwrap().tags["eval.technique.micro_f1"],
        "0.52"
    );
    assert!(
        reg.set_version_tag(&model, "2", "ctiforge.registry.artifacts", "[]")
            .is_err()
    );
    assert!(reg.get_version(&model, "99").unwrap_err().is_not_found());
    assert!(
        reg.get_version(&unique("nope"), "1")
            .unwrap_err()
            .is_not_found()
    );

    // Aliases, including the conditional swap.
    assert_eq!(reg.get_alias(&model, "champion").unwrap(), None);
    reg.set_alias(&model, "champion", "1").unwrap();
    let champion = reg.get_alias(&model, "champion").unwrap().unwrap();
    assert_eq!(
        (champion.version.as_str(), champion.aliases.clone()),
        ("1", vec!["champion".to_string()])
    );
    assert!(reg.set_alias(&model, "latest", "1").is_err());
    assert!(reg.set_alias(&model, "staging", "42").is_err());
    let stale = AliasSwap {
        alias: "champion",
        expected: Some("2"),
        version: "3",
        keep_previous_as: Some("previous"),
    };
    assert!(!reg.swap_alias(&model, &stale).unwrap());
    let fresh = AliasSwap {
        expected: Some("1"),
        ..stale
    };
    assert!(reg.swap_alias(&model, &fresh).unwrap());
    assert_eq!(
        reg.get_alias(&model, "champion").unwrap().unwrap().version,
        "3"
    );
    assert_eq!(
        reg.get_alias(&model, "previous").unwrap().unwrap().version,
        "1"
    );
    reg.delete_alias(&model, "previous").unwrap();
    reg.delete_alias(&model, "previous").unwrap();
    assert_eq!(reg.get_alias(&model, "previous").unwrap(), None);
    let first = AliasSwap {
        alias: "canary",
        expected: None,
        version: "2",
        keep_previous_as: None,
    };
    assert!(reg.swap_alias(&model, &first).unwrap());

    // Downloads and verified pulls.
    let out = scratch.join(format!("{model}-out"));
    let raw = out.join("raw.bin");
    std::fs::create_dir_all(&out).unwrap();
    let got = reg
        .download_artifact(&v1, "adapter/adapter_model.safetensors", &raw)
        .unwrap();
    assert_eq!(got, records[0]);
    assert_eq!(std::fs::read(&raw).unwrap(), contents[0]);
    let pulled = pull(
        reg,
        &format!("{model}/1"),
        "adapter/adapter_model.safetensors",
        &out.join("p1"),
    )
    .unwrap();
    assert_eq!(
        pulled.path,
        out.join("p1/adapter/adapter_model.safetensors")
    );
    assert_eq!(std::fs::read(&pulled.path).unwrap(), contents[0]);
    let by_alias = pull(
        reg,
        &format!("{model}@canary"),
        "adapter_config.json",
        &out.join("p2"),
    )
    .unwrap();
    assert_eq!(by_alias.version.version, "2");
    assert!(
        pull(
            reg,
            &format!("{model}@champion"),
            "../adapter_config.json",
            &out
        )
        .is_err()
    );
    assert!(
        pull(
            reg,
            &format!("{model}/3"),
            "adapter/adapter_model.safetensors",
            &out
        )
        .unwrap_err()
        .is_not_found()
    );
    assert!(
        pull(reg, &format!("{model}@unset"), "adapter_config.json", &out)
            .unwrap_err()
            .is_not_found()
    );
}

/// Gated promotion: first promotion, a refused candidate, a better one displacing the
/// champion to `previous`, and the recorded decisions.
pub fn promotion(reg: &dyn Registry, scratch: &Path) {
    let model = unique("cti-promo");
    let (run, records, _) = run_with_artifacts(reg, scratch, &unique("exp"));
    let register = |key: &str, f1: &str, ppl: &str, drift: &str| {
        let t = tags(&[
            ("eval.technique.micro_f1", f1),
            ("eval.perplexity", ppl),
            ("drift.verdict", drift),
        ]);
        reg.register_version(&model, &run, &records, &t, key)
            .unwrap()
            .version
    };
    let gate = Gate::parse(
        r#"rules = [
               "technique.micro_f1 >= 0.30",
               "technique.micro_f1 >= champion + 0.00",
               "perplexity <= champion * 1.05",
           ]
           [drift]
           require = "pass""#,
        Path::new("inline.toml"),
    )
    .unwrap();
    let v1 = register("a", "0.40", "9.0", "pass");
    let v2 = register("b", "0.45", "9.9", "pass"); // perplexity too high vs v1
    let v3 = register("c", "0.50", "8.0", "pass");
    let v4 = register("d", "0.60", "7.0", "fail"); // drift fails
    let v5 = register("e", "0.20", "5.0", "pass"); // below the floor

    let d1 = promote(reg, &model, &v1, &gate).unwrap();
    assert!(d1.promoted, "{:?}", d1.reasons);
    assert_eq!(d1.compared_with, None);
    let d2 = promote(reg, &model, &v2, &gate).unwrap();
    assert!(!d2.promoted);
    assert!(
        d2.reasons.iter().any(|r| r.starts_with("FAIL `perplexity")),
        "{:?}",
        d2.reasons
    );
    assert_eq!(
        reg.get_alias(&model, "champion").unwrap().unwrap().version,
        v1
    );
    let tagged = reg.get_version(&model, &v2).unwrap().tags;
    assert_eq!(tagged["ctiforge.promotion.decision"], "refused");
    assert!(tagged["ctiforge.promotion.reasons"].contains("perplexity"));
    assert_eq!(tagged["ctiforge.promotion.compared_with"], v1);

    assert!(!promote(reg, &model, &v4, &gate).unwrap().promoted);
    assert!(!promote(reg, &model, &v5, &gate).unwrap().promoted);
    let d3 = promote(reg, &model, &v3, &gate).unwrap();
    assert!(d3.promoted, "{:?}", d3.reasons);
    assert_eq!(
        reg.get_alias(&model, "champion").unwrap().unwrap().version,
        v3
    );
    assert_eq!(
        reg.get_alias(&model, "previous").unwrap().unwrap().version,
        v1
    );
    assert_eq!(
        reg.get_version(&model, &v3).unwrap().tags["ctiforge.promotion.decision"],
        "promoted"
    );
}

/// Two promotions race many times; the champion must end on the candidate that beats the
/// other (with `f1 >= champion`, v2 = 0.6 beats v3 = 0.55 whatever the order). Returns how
/// many rounds ended elsewhere (0 is required of the embedded store).
pub fn racing_promotions(reg: &dyn Registry, scratch: &Path, rounds: usize) -> usize {
    let gate = Gate::parse(
        "rules = [\"f1 >= champion + 0.0\"]\n[drift]\nrequire = \"none\"\n",
        Path::new("inline.toml"),
    )
    .unwrap();
    let (run, records, _) = run_with_artifacts(reg, scratch, &unique("exp"));
    let mut wrong = 0;
    for round in 0..rounds {
        let model = unique(&format!("race{round}"));
        for (key, f1) in [("v1", "0.5"), ("v2", "0.6"), ("v3", "0.55")] {
            reg.register_version(&model, &run, &records, &tags(&[("eval.f1", f1)]), key)
                .unwrap();
        }
        reg.set_alias(&model, "champion", "1").unwrap();
        std::thread::scope(|s| {
            for version in ["2", "3"] {
                let (model, gate) = (&model, &gate);
                s.spawn(move || promote(reg, model, version, gate).unwrap());
            }
        });
        let champion = reg.get_alias(&model, "champion").unwrap().unwrap();
        let decision = champion
            .tags
            .get("ctiforge.promotion.decision")
            .map(String::as_str);
        assert_eq!(
            decision,
            Some("promoted"),
            "champion {} never passed its gate",
            champion.version
        );
        if champion.version != "2" {
            wrong += 1;
        }
    }
    wrong
}

pub fn sha256(bytes: &[u8]) -> (String, u64) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    (
        digest.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.len() as u64,
    )
}
