#!/usr/bin/env python3
"""The `ctiforge prep` pipeline for a JSON Lines source of technique-classification rows,
written with pandas, pyarrow and datasketch as a data engineer would, for
`cargo xtask bench-prep` to compare against.

Usage:
    python reference_prep_pandas.py CORPUS.jsonl TECHNIQUES.tsv OUT_DIR
        [--seed 20250607] [--threshold 0.8] [--num-perm 128] [--bands 16]
        [--shingle-words 2] [--max-reject-fraction 0.05]

The steps follow data-prep's defaults for such a recipe (`kind = "jsonl"` with columns
`id`, `report`, `text`, `labels`):

1. read the file with `pandas.read_json(lines=True)`;
2. validate labels against the ATT&CK table: IDs are trimmed and upper-cased, revoked IDs
   map to the one active technique of the same name, a row with a malformed, unknown,
   deprecated or unmappable ID is rejected, labels are sorted and de-duplicated;
3. Unicode NFC, then three regex passes (citation markers, markdown links, whitespace runs)
   with `Series.str.replace`; rows left empty are rejected;
4. exact duplicates (lower-case, whitespace collapsed) are dropped, keeping the first row
   and merging the duplicates' labels into it;
5. near duplicates: MinHash over word shingles of the normalised text, LSH with
   `bands` bands, greedy in row order: a row is dropped when a kept row that shares a band
   has an estimated Jaccard similarity of at least `threshold`;
6. splits 0.8 / 0.1 / 0.1 grouped by report and stratified by each row's rarest label (a
   report's stratum is the most common one among its rows); within a stratum the reports
   are shuffled (seeded) and each goes to the split furthest below its target;
7. prompts, completions and chat messages from the same template strings as data-prep's
   built-in technique-classification templates;
8. one parquet file per split (pyarrow), the rejects as JSON Lines and a manifest.

Prints one JSON object on stdout with the row counts and the seconds of each stage. The
random choices (hash functions, shuffles) are numpy's and datasketch's, not data-prep's,
so near-duplicate counts and split assignments differ slightly from ctiforge's while the
other counts agree.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import pandas as pd
from datasketch import MinHash, MinHashLSH

SOURCE = "bench"
TASK = "technique_classification"
# The built-in technique-classification templates of data-prep/src/prompt.rs.
INSTRUCTION = (
    "List the MITRE ATT&CK technique IDs that the text describes, comma-separated, "
    "or `none`."
)
PROMPT_HEAD = INSTRUCTION + "\n\nText: "
PROMPT_TAIL = "\n\nTechniques:"
# The cleaning patterns of data-prep/src/clean.rs.
CITATION = r"\s*\(Citation:[^)]*\)"
MARKDOWN_LINK = r"\[([^\[\]]*)\]\((?:[^()\s]|\([^()\s]*\))*\)"
WHITESPACE = r"\s+"
TECHNIQUE_ID = re.compile(r"T\d{4}(\.\d{3})?")
SPLITS = ("train", "validation", "test")
MINHASH_CHUNK = 20_000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus")
    p.add_argument("techniques")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=20250607)
    p.add_argument("--threshold", type=float, default=0.8)
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--bands", type=int, default=16)
    p.add_argument("--shingle-words", type=int, default=2)
    p.add_argument("--max-reject-fraction", type=float, default=0.05)
    return p.parse_args()


class Stages:
    """Seconds per named stage, printed in the summary."""

    def __init__(self):
        self.secs = {}
        self.last = time.perf_counter()

    def done(self, name):
        now = time.perf_counter()
        self.secs[name] = round(now - self.last, 3)
        self.last = now
        print(f"reference: {name} {self.secs[name]:.1f}s", file=sys.stderr)


def load_catalog(path):
    """Active technique IDs and the revoked -> replacement map (unique name match)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    revoked = table["revoked"].str.lower() == "true"
    deprecated = table["deprecated"].str.lower() == "true"
    active = table[~revoked & ~deprecated]
    names = active["name"].str.lower()
    unique = active[~names.duplicated(keep=False)]
    by_name = dict(zip(unique["name"].str.lower(), unique["technique_id"]))
    mapping = dict(zip(active["technique_id"], active["technique_id"]))
    for tid, name in zip(table.loc[revoked, "technique_id"], table.loc[revoked, "name"]):
        if name.lower() in by_name:
            mapping[tid] = by_name[name.lower()]
    return mapping


def lists_by(keys, values):
    """A list of `values` per run of equal `keys` (both sorted by key), indexed by key.

    Slicing numpy arrays avoids pandas' per-group Python path of `groupby().agg(list)`."""
    keys = keys.to_numpy()
    values = values.to_numpy(dtype=object)
    if len(keys) == 0:
        return pd.Series([], dtype=object)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return pd.Series([part.tolist() for part in np.split(values, starts[1:])], index=keys[starts])


def validate_labels(df, mapping):
    """Resolved, sorted labels per row, and the reject reason (or None) per row."""
    exploded = df["labels"].explode()
    raw = exploded.dropna().astype(str).str.strip().str.upper()
    well_formed = raw.str.fullmatch(TECHNIQUE_ID.pattern)
    resolved = raw.map(mapping)
    bad = raw[~well_formed | resolved.isna()]
    reasons = bad.groupby(level=0).first()
    reasons = "label `" + reasons + "` is not an active ATT&CK technique"
    good = resolved[~resolved.index.isin(reasons.index)].rename("label").rename_axis("row")
    good = good.reset_index().drop_duplicates().sort_values(["row", "label"])
    labels = lists_by(good["row"], good["label"]).reindex(df.index)
    missing = labels.isna()
    labels[missing] = pd.Series([[] for _ in range(missing.sum())], index=labels.index[missing])
    return labels, reasons.reindex(df.index)


def clean(text):
    text = text.str.normalize("NFC")
    text = text.str.replace(CITATION, "", regex=True)
    text = text.str.replace(MARKDOWN_LINK, r"\1", regex=True)
    return text.str.replace(WHITESPACE, " ", regex=True).str.strip()


def normalise(text):
    return text.str.lower().str.split().str.join(" ")


def exact_dedup(df):
    """Keeps the first row of each normalised text, with the union of the group's labels."""
    key = normalise(df["text"])
    first = ~key.duplicated(keep="first")
    repeated = key.duplicated(keep=False)
    # Only texts that occur more than once can gain labels.
    pairs = (
        pd.DataFrame({"key": key[repeated], "label": df.loc[repeated, "labels"]})
        .explode("label")
        .dropna()
        .drop_duplicates()
        .sort_values(["key", "label"])
    )
    union = lists_by(pairs["key"], pairs["label"])
    kept = df[first].copy()
    kept["norm"] = key[first]
    has_dups = kept["norm"].isin(union.index)
    merged = kept.loc[has_dups, "norm"].map(union)
    labels_merged = int((merged != kept.loc[has_dups, "labels"]).sum())
    kept.loc[has_dups, "labels"] = merged
    return kept, int((~first).sum()), labels_merged


def shingles(norm, k):
    words = norm.split(" ")
    if not words or words == [""]:
        return []
    span = min(k, len(words))
    return [" ".join(words[i : i + span]).encode() for i in range(len(words) - span + 1)]


def near_dedup(norms, args):
    """Greedy MinHash + LSH in row order; returns a keep mask."""
    rows = args.num_perm // args.bands
    lsh = MinHashLSH(threshold=args.threshold, num_perm=args.num_perm, params=(args.bands, rows))
    kept_sigs = {}
    keep = np.ones(len(norms), dtype=bool)
    for start in range(0, len(norms), MINHASH_CHUNK):
        chunk = norms[start : start + MINHASH_CHUNK]
        sets = [shingles(n, args.shingle_words) for n in chunk]
        sigs = MinHash.bulk(sets, num_perm=args.num_perm, seed=args.seed)
        for offset, (words, m) in enumerate(zip(sets, sigs)):
            i = start + offset
            if not words:
                continue
            best = 0.0
            for j in lsh.query(m):
                best = max(best, m.jaccard(kept_sigs[j]))
            if best >= args.threshold:
                keep[i] = False
            else:
                lsh.insert(i, m, check_duplication=False)
                kept_sigs[i] = m
    return keep


def assign_splits(df, seed):
    """Grouped (by report) and stratified (by rarest label) 0.8 / 0.1 / 0.1 splits."""
    fractions = np.array([0.8, 0.1, 0.1])
    freq = df["labels"].explode().value_counts()
    rarest = df["labels"].map(
        lambda ls: min(ls, key=lambda l: (freq[l], l)) if ls else "none"
    )
    strata = TASK + "/" + rarest
    counts = pd.DataFrame({"group": df["report"], "stratum": strata}).value_counts()
    counts = counts.reset_index().sort_values(
        ["group", "count", "stratum"], ascending=[True, False, True]
    )
    groups = counts.groupby("group", sort=True).agg(
        stratum=("stratum", "first"), rows=("count", "sum")
    )
    split_of_group = {}
    for stratum, members in groups.groupby("stratum", sort=True):
        rng = np.random.default_rng([seed, int(hashlib.sha1(stratum.encode()).hexdigest()[:8], 16)])
        order = rng.permutation(len(members))
        names = members.index.to_numpy()[order]
        sizes = members["rows"].to_numpy()[order]
        targets = fractions * sizes.sum()
        filled = np.zeros(3)
        chosen = []
        for size in sizes:
            split = int(np.argmax(targets - filled))
            filled[split] += size
            chosen.append(split)
        fill_empty(chosen, sizes)
        split_of_group.update(zip(names, chosen))
    return df["report"].map(split_of_group)


def fill_empty(chosen, sizes):
    """Gives every split a group when the stratum has at least three groups."""
    if len(chosen) < 3:
        return
    for empty in range(3):
        if empty in chosen:
            continue
        donor = max(range(3), key=lambda s: (chosen.count(s), -s))
        candidates = [g for g in range(len(chosen)) if chosen[g] == donor]
        smallest = min(candidates, key=lambda g: (sizes[g], -g))
        chosen[smallest] = empty


def render(df):
    completion = df["labels"].str.join(", ").replace("", "none")
    df["prompt"] = PROMPT_HEAD + df["text"] + PROMPT_TAIL
    df["completion"] = " " + completion
    df["target"] = [json.dumps({"techniques": ls}, separators=(",", ":")) for ls in df["labels"]]
    df["messages"] = [
        json.dumps(
            [{"role": "user", "content": p}, {"role": "assistant", "content": c.strip()}],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for p, c in zip(df["prompt"], df["completion"])
    ]


def write(df, rejects, out, counts):
    stage = out.rstrip("/") + ".tmp"
    shutil.rmtree(stage, ignore_errors=True)
    os.makedirs(stage)
    columns = ["id", "task", "source", "line", "group", "text", "text_raw", "labels", "target",
               "prompt", "completion", "messages", "prompt_tokens", "completion_tokens"]
    df = df.rename(columns={"report": "group", "raw": "text_raw"})
    df["task"] = TASK
    df["source"] = SOURCE
    df["prompt_tokens"] = pd.array([None] * len(df), dtype="UInt32")
    df["completion_tokens"] = pd.array([None] * len(df), dtype="UInt32")
    manifest = {"name": "bench-synthetic", "counts": counts, "splits": {}}
    for index, name in enumerate(SPLITS):
        part = df.loc[df["split"] == index, columns]
        path = os.path.join(stage, f"{name}.parquet")
        part.to_parquet(path, engine="pyarrow", index=False)
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        chars = part["text"].str.len()
        manifest["splits"][name] = {
            "rows": len(part),
            "groups": int(part["group"].nunique()),
            "sha256": sha,
            "labels": part["labels"].explode().value_counts().to_dict(),
            "text_chars": chars.describe(percentiles=[0.5, 0.95]).round(2).to_dict(),
        }
    rejects.to_json(os.path.join(stage, "rejects.jsonl"), orient="records", lines=True)
    with open(os.path.join(stage, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=int)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(stage, out)
    return manifest


def main():
    args = parse_args()
    t = Stages()
    df = pd.read_json(args.corpus, lines=True, dtype={"id": str, "report": str})
    df["line"] = np.arange(1, len(df) + 1, dtype=np.uint32)
    df["id"] = SOURCE + ":" + df["id"].astype(str)
    read = len(df)
    t.done("read")

    mapping = load_catalog(args.techniques)
    df["labels"], reasons = validate_labels(df, mapping)
    empty = df["text"].isna() | (df["text"].fillna("").str.strip() == "")
    reasons = reasons.mask(empty & reasons.isna(), "empty text")
    bad = reasons.notna()
    rejects = pd.DataFrame({"source": SOURCE, "file": args.corpus, "line": df.loc[bad, "line"],
                            "reason": reasons[bad]})
    df = df[~bad].copy()
    t.done("validate")

    df["raw"] = df["text"]
    df["text"] = clean(df["text"])
    short = df["text"].str.len() < 1
    rejects = pd.concat([rejects, pd.DataFrame({
        "source": SOURCE, "file": args.corpus, "line": df.loc[short, "line"],
        "reason": "cleaned text is empty"})])
    df = df[~short]
    t.done("clean")

    df, exact, merged = exact_dedup(df)
    t.done("exact dedup")
    keep = near_dedup(df["norm"].tolist(), args)
    near = int((~keep).sum())
    df = df[keep].drop(columns=["norm"])
    t.done("near dedup")

    df["split"] = assign_splits(df, args.seed)
    t.done("split")
    render(df)
    t.done("render")

    counts = {"read": read, "rejected": len(rejects), "exact_duplicates": exact,
              "labels_merged": merged, "near_duplicates": near, "kept": len(df)}
    fraction = len(rejects) / max(read, 1)
    if fraction > args.max_reject_fraction:
        sys.exit(f"reference: {len(rejects)} of {read} rows rejected ({100 * fraction:.2f}%)")
    manifest = write(df, rejects, args.out, counts)
    t.done("write")
    splits = {name: s["rows"] for name, s in manifest["splits"].items()}
    print(json.dumps({**counts, "splits": splits, "stage_secs": t.secs}))


if __name__ == "__main__":
    main()
