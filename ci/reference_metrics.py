#!/usr/bin/env python3
"""Reference numbers for the parity tests of `ctiforge-eval` (eval/tests/reference.rs).

Usage:
    python reference_metrics.py INPUT.json OUTPUT.json

INPUT holds {"tasks": [...]}; each task has a "kind" and its inputs. OUTPUT gets
{"results": [...]}, one result per task in the same order, computed by the reference
implementations the Rust metrics must match:

    multilabel      scikit-learn precision_recall_fscore_support (micro, macro, samples,
                    per label) with zero_division, accuracy_score, hamming_loss, on
                    MultiLabelBinarizer output over the union of labels
    seqeval         seqeval classification_report(output_dict=True), default mode or
                    mode='strict' with scheme=IOB2
    rouge           rouge-score RougeScorer(types, use_stemmer).score(target, prediction)
    rouge_tokenize  rouge-score's DefaultTokenizer(use_stemmer).tokenize(text)
    stem            nltk PorterStemmer().stem(word) (NLTK_EXTENSIONS, as rouge-score)
    bleu            sacrebleu BLEU(...).corpus_score(hyps, ref_streams), signature included
    tok13a          sacrebleu's Tokenizer13a()(line)

NaN is written as null (JSON has no NaN).
"""

import json
import math
import sys
import warnings

import numpy as np
import sacrebleu
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics import BLEU
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer


def clean(x):
    """Turns numpy scalars into Python numbers and NaN into None."""
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return None if math.isnan(x) else x
    return x


def multilabel(task):
    zd = task.get("zero_division", 0)
    mlb = MultiLabelBinarizer()
    mlb.fit(task["gold"] + task["pred"])
    y_true = mlb.transform(task["gold"])
    y_pred = mlb.transform(task["pred"])
    out = {}
    for avg in ("micro", "macro", "samples"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, average=avg, zero_division=zd
        )
        out[avg] = {"precision": p, "recall": r, "f1": f}
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=zd
    )
    out["per_label"] = [
        {"label": lab, "precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        for i, lab in enumerate(mlb.classes_)
    ]
    out["exact_match"] = accuracy_score(y_true, y_pred)
    out["hamming_loss"] = hamming_loss(y_true, y_pred)
    return out


def seqeval_report(task):
    kwargs = {"output_dict": True, "zero_division": 0}
    if task.get("mode") == "strict":
        kwargs.update(mode="strict", scheme=IOB2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(task["gold"], task["pred"], **kwargs)


def rouge(task):
    scorer = rouge_scorer.RougeScorer(task["types"], use_stemmer=task["stem"])
    rows = []
    for target, prediction in zip(task["targets"], task["predictions"]):
        s = scorer.score(target, prediction)
        rows.append(
            {k: {"precision": v.precision, "recall": v.recall, "fmeasure": v.fmeasure} for k, v in s.items()}
        )
    return rows


def bleu(task):
    o = task.get("options", {})
    metric = BLEU(
        lowercase=o.get("lowercase", False),
        tokenize=o.get("tokenize", "13a"),
        smooth_method=o.get("smooth_method", "exp"),
        smooth_value=o.get("smooth_value"),
        max_ngram_order=o.get("max_ngram_order", 4),
        effective_order=o.get("effective_order", False),
    )
    refs = task["refs"]
    width = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(width)]
    s = metric.corpus_score(task["hyps"], streams)
    return {
        "score": s.score,
        "counts": [float(c) for c in s.counts],
        "totals": [float(t) for t in s.totals],
        "precisions": s.precisions,
        "bp": s.bp,
        "sys_len": s.sys_len,
        "ref_len": s.ref_len,
        "signature": str(metric.get_signature()),
    }


def run(task):
    kind = task["kind"]
    if kind == "multilabel":
        return multilabel(task)
    if kind == "seqeval":
        return seqeval_report(task)
    if kind == "rouge":
        return rouge(task)
    if kind == "rouge_tokenize":
        tok = tokenizers.DefaultTokenizer(use_stemmer=task["stem"])
        return [tok.tokenize(t) for t in task["texts"]]
    if kind == "stem":
        stemmer = PorterStemmer()
        return [stemmer.stem(w) for w in task["words"]]
    if kind == "bleu":
        return bleu(task)
    if kind == "tok13a":
        tok = Tokenizer13a()
        return [tok(line) for line in task["lines"]]
    raise SystemExit(f"reference_metrics.py: unknown task kind {kind!r}")


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tasks = json.load(f)["tasks"]
    results = [clean(run(t)) for t in tasks]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"results": results, "versions": {"sacrebleu": sacrebleu.__version__}}, f, allow_nan=False)


if __name__ == "__main__":
    main()
