#!/usr/bin/env python3
"""Reference numbers for the drift parity tests of `ctiforge-registry`
(registry/tests/drift_reference.rs).

Usage:
    python reference_drift.py INPUT.json OUTPUT.json

INPUT holds {"tasks": [...]}; each task has a "kind" and its inputs. OUTPUT gets
{"results": [...]}, one per task in the same order, from the implementations the Rust
statistics must match:

    ks_2samp        scipy.stats.ks_2samp(a, b, method="asymp"): statistic and pvalue
    kstwo_sf        scipy.stats.kstwo.sf(x, n): the Kolmogorov survival function
    wasserstein     scipy.stats.wasserstein_distance(u, v)
    jensenshannon   scipy.spatial.distance.jensenshannon(p, q, base=2)
    psi_numeric     numpy: bins cut at np.quantile(reference, i/bins) (linear), shares by
                    np.searchsorted(side="left"), PSI = sum((c - r) ln(c / r)) with both
                    shares floored at epsilon

NaN is written as null (JSON has no NaN).
"""

import json
import math
import sys

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import kstwo, ks_2samp, wasserstein_distance


def num(x):
    x = float(x)
    return None if math.isnan(x) else x


def psi_numeric(reference, current, bins, epsilon):
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.arange(1, bins) / bins))

    def shares(x):
        idx = np.searchsorted(edges, x, side="left")
        return np.bincount(idx, minlength=len(edges) + 1) / len(x)

    r = np.maximum(shares(reference), epsilon)
    c = np.maximum(shares(current), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def run(task):
    kind = task["kind"]
    if kind == "ks_2samp":
        res = ks_2samp(task["a"], task["b"], method="asymp")
        return {"statistic": num(res.statistic), "pvalue": num(res.pvalue)}
    if kind == "kstwo_sf":
        return {"sf": num(kstwo.sf(task["x"], task["n"]))}
    if kind == "wasserstein":
        return {"distance": num(wasserstein_distance(task["u"], task["v"]))}
    if kind == "jensenshannon":
        return {"distance": num(jensenshannon(task["p"], task["q"], base=2))}
    if kind == "psi_numeric":
        return {
            "psi": num(
                psi_numeric(task["reference"], task["current"], task["bins"], task["epsilon"])
            )
        }
    raise ValueError(f"unknown task kind {kind!r}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tasks = json.load(f)["tasks"]
    results = [run(t) for t in tasks]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump({"results": results}, f)


if __name__ == "__main__":
    main()
