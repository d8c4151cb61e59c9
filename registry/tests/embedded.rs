//! The contract suite and fault tests against the embedded store (plain `cargo test`).

// Helpers outside `#[test]` bodies unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{run_with_artifacts, tags};
use ctiforge_registry::{EmbeddedStore, Error, PageRequest, Registry, Tags, pull};

fn store() -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("registry")).unwrap();
    (dir, store)
}

#[test]
fn contract_runs() {
    let (_dir, store) = store();
    common::runs(&store);
}

#[test]
fn contract_versions() {
    let (dir, store) = store();
    common::versions(&store, dir.path());
}

#[test]
fn contract_promotion() {
    let (dir, store) = store();
    common::promotion(&store, dir.path());
}

#[test]
fn racing_promotions_never_leave_a_loser_as_champion() {
    let (dir, store) = store();
    assert_eq!(common::racing_promotions(&store, dir.path(), 15), 0);
}

#[test]
fn open_picks_the_embedded_store_for_paths_and_file_uris() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("file://{}", dir.path().join("reg").display());
    let registry = ctiforge_registry::open(Some(&uri)).unwrap();
    assert!(
        registry.describe().starts_with("embedded store at"),
        "{}",
        registry.describe()
    );
    let run = registry.create_run("exp", "r", &Tags::new()).unwrap();
    // The same folder opened by path sees the same data.
    let again = ctiforge_registry::open(Some(dir.path().join("reg").to_str().unwrap())).unwrap();
    assert_eq!(again.get_run(&run).unwrap().name, "r");
}

#[test]
fn corrupted_object_is_refused_by_checksum_and_leaves_nothing() {
    let (dir, store) = store();
    let (run, records, _) = run_with_artifacts(&store, dir.path(), "exp");
    store
        .register_version("m", &run, &records, &Tags::new(), "k")
        .unwrap();
    let object = store.object_path(&records[0].sha256);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&object, &bytes).unwrap();

    let out = dir.path().join("out");
    let error = pull(&store, "m/1", &records[0].path, &out).unwrap_err();
    assert!(matches!(error, Error::ChecksumMismatch { .. }), "{error}");
    assert!(error.to_string().contains(&records[0].sha256), "{error}");
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // The intact artifact still pulls.
    pull(&store, "m/1", &records[1].path, &out).unwrap();
}

#[test]
fn concurrent_writers_lose_nothing_and_never_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("registry");
    let first = EmbeddedStore::open(&root).unwrap();
    let (shared_run, shared_records, _) = run_with_artifacts(&first, dir.path(), "exp");
    let (threads, per_thread) = (4, 8);
    let scratch = Arc::new(dir.path().to_path_buf());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (root, scratch) = (root.clone(), scratch.clone());
            let (shared_run, shared_records) = (&shared_run, &shared_records);
            s.spawn(move || {
                // Each writer has its own connection, as a separate process would.
                let store = EmbeddedStore::open(&root).unwrap();
                let (run, records, _) = run_with_artifacts(&store, &scratch, "exp");
                for i in 0..per_thread {
                    let key = format!("t{t}-{i}");
                    let version = store
                        .register_version("m", &run, &records, &Tags::new(), &key)
                        .unwrap();
                    let retried = store
                        .register_version("m", &run, &records, &Tags::new(), &key)
                        .unwrap();
                    assert_eq!(version.version, retried.version);
                    store
                        .set_version_tag("m", &version.version, "writer", &key)
                        .unwrap();
                    store
                        .log_metrics(&run, &[ctiforge_registry::Metric::now("n", i as f64, i)])
                        .unwrap();
                    // Every writer races to register the same shared key.
                    store
                        .register_version("m", shared_run, shared_records, &Tags::new(), "shared")
                        .unwrap();
                }
            });
        }
    });
    let mut all = Vec::new();
    let mut page = PageRequest {
        max_results: 7,
        token: None,
    };
    loop {
        let got = first.list_versions("m", &page).unwrap();
        all.extend(got.items);
        match got.next_token {
            Some(t) => page.token = Some(t),
            None => break,
        }
    }
    let expected = threads * per_thread as usize + 1;
    assert_eq!(all.len(), expected);
    let numbers: BTreeSet<u64> = all.iter().map(|v| v.version.parse().unwrap()).collect();
    assert_eq!(numbers, (1..=expected as u64).collect());
    let writers: BTreeMap<&str, usize> =
        all.iter()
            .filter_map(|v| v.tags.get("writer"))
            .fold(BTreeMap::new(), |mut m, k| {
                *m.entry(k.as_str()).or_default() += 1;
                m
            });
    assert_eq!(writers.len(), threads * per_thread as usize);
    assert!(writers.values().all(|&n| n == 1));
}

#[test]
fn version_needs_its_artifacts_stored() {
    let (dir, store) = store();
    let (run, records, _) = run_with_artifacts(&store, dir.path(), "exp");
    std::fs::remove_file(store.object_path(&records[0].sha256)).unwrap();
    let error = store
        .register_version("m", &run, &records, &Tags::new(), "k")
        .unwrap_err();
    assert!(error.is_not_found(), "{error}");
    assert!(store.list_models().unwrap().is_empty());
    let bad = tags(&[("a", "b")]);
    assert!(store.register_version("m", &run, &[], &bad, "k").is_err());
}
