#!/usr/bin/env python3
"""Timing of the reference metric implementations on the inputs of ctiforge-eval's
criterion bench (`eval/benches/metrics.rs` writes them to target/eval-bench-inputs.json),
so the lead can record the Rust/Python ratio.

Usage:
    python reference_metrics_bench.py INPUTS.json [--repeats 3]

Prints one JSON object on stdout with seconds per full pass over the pairs (the median of
--repeats timed runs):
    rouge_1_2_L_Lsum          rouge-score RougeScorer(rouge1, rouge2, rougeL, rougeLsum)
    rouge_1_2_L_Lsum_stemmed  the same with use_stemmer=True
    corpus_bleu               sacrebleu BLEU().corpus_score with one reference per segment
    multi_label_f1            MultiLabelBinarizer + sklearn micro/macro/samples F1
"""

import argparse
import json
import statistics
import time

from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("inputs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with open(args.inputs, encoding="utf-8") as f:
        data = json.load(f)
    hyps, refs = data["hyps"], data["refs"]
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]

    def rouge(stem):
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=stem)
        return lambda: [scorer.score(r, h) for r, h in zip(refs, hyps)]

    def bleu():
        # A fresh metric each pass: sacrebleu's tokenizer caches lines (lru_cache).
        BLEU().corpus_score(hyps, [refs])

    def f1():
        mlb = MultiLabelBinarizer()
        mlb.fit(data["gold_labels"] + data["pred_labels"])
        y_true = mlb.transform(data["gold_labels"])
        y_pred = mlb.transform(data["pred_labels"])
        for avg in ("micro", "macro", "samples"):
            f1_score(y_true, y_pred, average=avg, zero_division=0)

    out = {
        "pairs": len(hyps),
        "rouge_1_2_L_Lsum": timed(rouge(False), args.repeats),
        "rouge_1_2_L_Lsum_stemmed": timed(rouge(True), args.repeats),
        "corpus_bleu": timed(bleu, args.repeats),
        "multi_label_f1": timed(f1, args.repeats),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
