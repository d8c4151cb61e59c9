#!/usr/bin/env python3
"""Reference outputs from Hugging Face `transformers` for ctiforge's parity tests.

The Rust tests never import this file; they run it with the interpreter printed by
`ci/setup-reference.sh` (passed in as `CTIFORGE_REF_PYTHON`) and compare its JSON with
what the Burn model computes for the same folder and token ids.

Usage:
    python reference_logits.py MODEL_DIR --tokens 1,2,3[;4,5,6...]
        -> {"logits": [[[vocab floats] per position] per sequence]}
    python reference_logits.py MODEL_DIR --tokens 1,2,3 --generate N [--stop-at-eos]
        -> {"generated": [[new token ids] per sequence]}

Everything runs on the CPU in float32 with eager attention, so the numbers do not
depend on SDPA kernels or on the dtype the checkpoint was saved in.
"""

import argparse
import json
import sys

import torch
from transformers import AutoModelForCausalLM, GenerationConfig


def parse_sequences(text):
    """Turns "1,2,3;4,5" into [[1, 2, 3], [4, 5]], rejecting empty sequences."""
    sequences = []
    for part in text.split(";"):
        ids = [int(tok) for tok in part.split(",") if tok.strip()]
        if not ids:
            sys.exit(f"reference_logits: empty token sequence in --tokens {text!r}")
        sequences.append(ids)
    return sequences


def load_model(model_dir):
    """Loads the HF folder as a float32 CPU model in eval mode."""
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def forward_logits(model, sequences):
    # Each sequence gets its own forward pass, so no padding or attention mask is
    # needed and sequences may differ in length.
    out = []
    for ids in sequences:
        input_ids = torch.tensor([ids], dtype=torch.long)  # (1, T)
        logits = model(input_ids=input_ids, use_cache=False).logits  # (1, T, vocab)
        out.append(logits[0].tolist())
    return {"logits": out}


def greedy_generate(model, sequences, new_tokens, stop_at_eos):
    # A fresh GenerationConfig keeps any generation_config.json in the folder
    # (temperature, repetition penalty, ...) from changing the result. Without
    # --stop-at-eos there is no EOS, so exactly `new_tokens` argmax steps are taken.
    eos = model.config.eos_token_id if stop_at_eos else None
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        do_sample=False,
        use_cache=True,
        eos_token_id=eos,
        pad_token_id=eos if eos is not None else 0,
    )
    out = []
    for ids in sequences:
        input_ids = torch.tensor([ids], dtype=torch.long)  # (1, T)
        mask = torch.ones_like(input_ids)
        result = model.generate(
            input_ids=input_ids, attention_mask=mask, generation_config=config
        )  # (1, T + new)
        out.append(result[0, len(ids):].tolist())
    return {"generated": out}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a Hugging Face model folder")
    parser.add_argument(
        "--tokens", required=True, help="comma-separated ids; ';' separates sequences"
    )
    parser.add_argument(
        "--generate", type=int, metavar="N", help="greedy-generate N new tokens instead"
    )
    parser.add_argument(
        "--stop-at-eos",
        action="store_true",
        help="with --generate, stop a sequence at the model's EOS token",
    )
    args = parser.parse_args()

    sequences = parse_sequences(args.tokens)
    model = load_model(args.model_dir)
    with torch.inference_mode():
        if args.generate is not None:
            result = greedy_generate(model, sequences, args.generate, args.stop_at_eos)
        else:
            result = forward_logits(model, sequences)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
