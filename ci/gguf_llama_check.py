#!/usr/bin/env python3
"""Loads a GGUF file with llama.cpp (llama-cpp-python) and dumps, as JSON: greedy (argmax)
generation of N tokens after BOS (or the evaluation of given token ids), the logits at every
position of that sequence, and the tokenization of texts. Used by export/tests/convert.rs
and export/tests/llama_parity.rs to compare llama.cpp with the model crate.

usage: gguf_llama_check.py FILE.gguf OUT.json [--steps N] [--text TEXT]
                           [--ids 1,2,3] [--lora ADAPTER.gguf] [--texts-file TEXTS.json]
  --ids         evaluate exactly these token ids (no generation); logits for each position
  --lora        apply a LoRA adapter GGUF (scale 1)
  --texts-file  a JSON list of strings; their token ids (no BOS, no special parsing) are
                written as "texts_ids"
Set GGUF_CHECK_VERBOSE=1 for llama.cpp's load log on stderr.
"""
import argparse
import json
import os

import numpy as np
from llama_cpp import Llama


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gguf")
    p.add_argument("output")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--text", default="Echoes of vectors unfold")
    p.add_argument("--ids", default=None)
    p.add_argument("--lora", default=None)
    p.add_argument("--texts-file", default=None)
    a = p.parse_args()
    ids = [int(t) for t in a.ids.split(",")] if a.ids else None
    n_ctx = max(a.steps, len(ids) if ids else 0) + 8
    kwargs = dict(model_path=a.gguf, logits_all=True, n_ctx=n_ctx, n_threads=2,
                  verbose=bool(os.environ.get("GGUF_CHECK_VERBOSE")), seed=0)
    # F32 KV cache (GGML_TYPE_F32 = 0): the default F16 cache rounds K and V.
    kwargs["type_k"] = 0
    kwargs["type_v"] = 0
    if a.lora:
        kwargs["lora_path"] = a.lora
    llm = Llama(**kwargs)
    bos = llm.token_bos()
    llm.reset()
    generated = []
    if ids is not None:
        llm.eval(ids)
        input_ids = ids
    else:
        llm.eval([bos])
        for _ in range(a.steps):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            generated.append(nxt)
            llm.eval([nxt])
        input_ids = [bos] + generated
    logits = [llm.scores[i].astype(float).tolist() for i in range(llm.n_tokens)]
    out = {
        "bos": bos,
        "generated_ids": generated,
        "input_ids": input_ids,
        "logits": logits,
        "text": a.text,
        "text_ids": llm.tokenize(a.text.encode(), add_bos=False, special=False),
        "n_vocab": llm.n_vocab(),
    }
    if a.texts_file:
        with open(a.texts_file) as f:
            texts = json.load(f)
        out["texts_ids"] = [llm.tokenize(t.encode(), add_bos=False, special=False)
                            for t in texts]
    with open(a.output, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
