//! Parity of the drift statistics with scipy and numpy, run by `ci/reference_drift.py` on
//! the same seeded samples: `ks_2samp(method="asymp")` (statistic and p-value), the
//! Kolmogorov survival function `kstwo.sf` over a grid that reaches every evaluation
//! region, `wasserstein_distance`, `jensenshannon(base=2)` and quantile-binned PSI.
//!
//! `#[ignore]`d for plain `cargo test`: they need the environment of `ci/setup-evalref.sh`,
//! whose interpreter they read from `CTIFORGE_EVALREF_PYTHON`.

// Helpers outside `#[test]` bodies unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use ctiforge_registry::drift::{DriftConfig, DriftInput, drift_report, ks, stats};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Runs the reference script on `tasks` and returns one result per task.
fn reference(tasks: &[Value]) -> Vec<Value> {
    let python = std::env::var("CTIFORGE_EVALREF_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CTIFORGE_EVALREF_PYTHON is not set: run `ci/setup-evalref.sh` and set the \
             variable to the interpreter path it prints (cargo xtask ci does both)"
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.json"), dir.path().join("out.json"));
    std::fs::write(&input, json!({ "tasks": tasks }).to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/reference_drift.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "reference_drift.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), tasks.len());
    results
}

/// `|ours − theirs| ≤ abs + rel·|theirs|`.
fn assert_close(what: &str, ours: f64, theirs: &Value, abs: f64, rel: f64) {
    let theirs = theirs
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: reference gave {theirs}"));
    let tol = abs + rel * theirs.abs();
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours:e}, scipy {theirs:e}, diff {:e} > {tol:e}",
        (ours - theirs).abs()
    );
}

/// A normal sample (Box-Muller), optionally rounded to integers to create ties.
fn normal(rng: &mut StdRng, n: usize, mean: f64, sd: f64, round: bool) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let x = mean + sd * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            if round { x.round() } else { x }
        })
        .collect()
}

/// Pairs of samples: small to large, equal and shifted, continuous and tied.
fn sample_pairs() -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let specs: [(usize, usize, f64, f64, bool); 9] = [
        (8, 8, 0.0, 1.0, false),
        (30, 45, 0.5, 1.0, false),
        (200, 150, 0.0, 1.3, false),
        (200, 150, 0.1, 1.0, true),
        (1000, 1300, 0.05, 1.0, false),
        (3000, 3000, 0.3, 1.0, false),
        (2500, 4000, 0.02, 1.0, false),
        (500, 40, 2.0, 1.0, false),
        (4000, 3500, 0.0, 1.0, true),
    ];
    specs
        .iter()
        .map(|&(n, m, shift, sd, round)| {
            let scale = if round { 20.0 } else { 1.0 };
            let a = normal(&mut rng, n, 100.0, scale, round);
            let b = normal(&mut rng, m, 100.0 + shift * scale, sd * scale, round);
            (
                format!("n={n} m={m} shift={shift} sd={sd} ties={round}"),
                a,
                b,
            )
        })
        .collect()
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn ks_2samp_matches_scipy() {
    let pairs = sample_pairs();
    let tasks: Vec<Value> = pairs
        .iter()
        .map(|(_, a, b)| json!({"kind": "ks_2samp", "a": a, "b": b}))
        .collect();
    for ((name, a, b), r) in pairs.iter().zip(reference(&tasks)) {
        let t = ks::ks_2samp(a, b).unwrap();
        assert_close(
            &format!("{name} D"),
            t.statistic,
            &r["statistic"],
            1e-12,
            0.0,
        );
        assert_close(&format!("{name} p"), t.pvalue, &r["pvalue"], 1e-10, 1e-8);
    }
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn kolmogorov_sf_matches_scipy_in_every_region() {
    let ns = [1u64, 2, 3, 5, 10, 37, 140, 141, 500, 2_000, 20_000, 150_000];
    let xs = [
        0.001, 0.004, 0.01, 0.02, 0.035, 0.05, 0.08, 0.1, 0.2, 0.3, 0.45, 0.5, 0.7, 0.95,
    ];
    let grid: Vec<(u64, f64)> = ns
        .iter()
        .flat_map(|&n| xs.iter().map(move |&x| (n, x)))
        .collect();
    let tasks: Vec<Value> = grid
        .iter()
        .map(|&(n, x)| json!({"kind": "kstwo_sf", "n": n, "x": x}))
        .collect();
    for (&(n, x), r) in grid.iter().zip(reference(&tasks)) {
        let ours = ks::kolmogorov_sf(n, x);
        assert_close(&format!("kstwo.sf({x}, {n})"), ours, &r["sf"], 1e-10, 1e-8);
    }
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn wasserstein_js_and_psi_match_scipy_and_numpy() {
    let pairs = sample_pairs();
    let mut tasks = Vec::new();
    for (_, a, b) in &pairs {
        tasks.push(json!({"kind": "wasserstein", "u": a, "v": b}));
        tasks.push(json!({
            "kind": "psi_numeric", "reference": a, "current": b, "bins": 10, "epsilon": 1e-4
        }));
    }
    let mut rng = StdRng::seed_from_u64(11);
    let mut dists = Vec::new();
    for k in [2usize, 5, 40] {
        for zeros in [false, true] {
            let mut p: Vec<f64> = (0..k).map(|_| rng.random::<f64>()).collect();
            let q: Vec<f64> = (0..k).map(|_| rng.random::<f64>() * 3.0).collect();
            if zeros {
                p[0] = 0.0;
            }
            tasks.push(json!({"kind": "jensenshannon", "p": p, "q": q}));
            dists.push((p, q));
        }
    }
    let results = reference(&tasks);
    for (i, (name, a, b)) in pairs.iter().enumerate() {
        let w = stats::wasserstein(a, b).unwrap();
        assert_close(
            &format!("{name} W1"),
            w,
            &results[2 * i]["distance"],
            1e-9,
            1e-12,
        );
        let psi = stats::psi_numeric(a, b, 10, 1e-4).unwrap();
        assert_close(
            &format!("{name} PSI"),
            psi,
            &results[2 * i + 1]["psi"],
            1e-12,
            1e-10,
        );
    }
    for (j, (p, q)) in dists.iter().enumerate() {
        let js = stats::js_distance(p, q).unwrap();
        let r = &results[2 * pairs.len() + j]["distance"];
        assert_close(
            &format!("JS over {} categories", p.len()),
            js,
            r,
            1e-12,
            1e-10,
        );
    }
}

#[test]
#[ignore = "needs the evalref reference env (CTIFORGE_EVALREF_PYTHON)"]
fn report_numbers_are_the_reference_numbers() {
    let (_, a, b) = sample_pairs().swap_remove(1);
    let side = |x: &[f64]| DriftInput {
        labels: vec![Vec::new(); x.len()],
        text_chars: x.to_vec(),
        ..DriftInput::default()
    };
    let report = drift_report(&side(&a), &side(&b), &DriftConfig::default()).unwrap();
    let tasks = [
        json!({"kind": "ks_2samp", "a": a, "b": b}),
        json!({"kind": "wasserstein", "u": a, "v": b}),
    ];
    let r = reference(&tasks);
    let stat = |id: &str| report.statistics.iter().find(|s| s.id == id).unwrap();
    let ks = stat("text_chars.ks_pvalue");
    assert_close("report KS p", ks.value, &r[0]["pvalue"], 1e-10, 1e-8);
    assert_close(
        "report KS D",
        ks.details["ks_statistic"],
        &r[0]["statistic"],
        1e-12,
        0.0,
    );
    let w = stat("text_chars.wasserstein_norm");
    assert_close(
        "report W1",
        w.details["wasserstein"],
        &r[1]["distance"],
        1e-9,
        1e-12,
    );
}
