#!/usr/bin/env python3
"""Times the reference quantizers on the shape of export/benches/quant.rs (4096x4096 f32,
uniform in [-1, 1)): gguf-py's gguf.quants.quantize (numpy) for the types it can quantize,
and ggml's ggml_quantize_chunk (C, one thread, no imatrix) for every type. Prints one JSON
line per (backend, type) with MB/s of f32 input, for comparison with
`cargo bench -p ctiforge-export --bench quant`. Run with the interpreter printed by
ci/setup-gguf.sh.
"""
import json
import os
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_reference import ggml  # noqa: E402

ROWS = COLS = 4096
GGUF_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
GGML_TYPES = GGUF_TYPES + ["Q2_K", "Q4_K", "Q5_K", "Q6_K"]


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    repeats = int(os.environ.get("REPEATS", "3"))
    x = np.random.default_rng(7).uniform(-1, 1, (ROWS, COLS)).astype(np.float32)
    mb = x.nbytes / 1e6
    lib = ggml()
    for name in GGML_TYPES:
        t = QT[name]
        block, size = gguf.GGML_QUANT_SIZES[t]
        out = np.zeros(ROWS * COLS // block * size, dtype=np.uint8)
        secs = best_of(lambda: lib.ggml_quantize_chunk(
            int(t), x.ctypes.data, out.ctypes.data, 0, ROWS, COLS, None), repeats)
        print(json.dumps({"backend": "ggml_quantize_chunk (1 thread)", "type": name,
                          "secs": round(secs, 4), "mb_per_s": round(mb / secs, 1)}), flush=True)
    for name in GGUF_TYPES:
        secs = best_of(lambda: gguf.quants.quantize(x, QT[name]), repeats)
        print(json.dumps({"backend": "gguf-py", "type": name, "secs": round(secs, 4),
                          "mb_per_s": round(mb / secs, 1)}), flush=True)


if __name__ == "__main__":
    main()
