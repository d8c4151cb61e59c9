//! Every shipped gate and drift config parses and validates.

use std::path::{Path, PathBuf};

use ctiforge_registry::Gate;
use ctiforge_registry::drift::DriftConfig;

fn files(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no configs in {}", root.display());
    out
}

#[test]
fn shipped_gates_parse() {
    for path in files("configs/gates") {
        let gate = Gate::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!gate.rules.is_empty(), "{} has no rules", path.display());
    }
}

#[test]
fn shipped_drift_configs_parse_and_default_matches_the_code() {
    for path in files("configs/drift") {
        let config =
            DriftConfig::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if path.file_name().is_some_and(|n| n == "default.toml") {
            assert_eq!(config, DriftConfig::default(), "{}", path.display());
        }
    }
}
