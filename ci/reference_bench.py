#!/usr/bin/env python3
"""CPU throughput of Hugging Face `transformers` on a model folder, for comparison
with ctiforge's own generation benchmark (`cargo xtask bench` runs both).

Usage:
    python reference_bench.py MODEL_DIR [--prompt-tokens 128] [--new-tokens 64]
                                        [--threads 2] [--repeats 3]

Prints one JSON object on stdout:
    prompt_tokens_per_sec      prompt length / time of one forward pass over the prompt
    generation_tokens_per_sec  new tokens / time of the greedy decode loop, one token
                               per forward pass, reusing the KV cache from the prompt

Each figure is the median over `--repeats` timed runs after one untimed warm-up run.
The prompt is a fixed pseudo-random id sequence, so runs are comparable; the model's
weights need not be trained for a throughput measurement.
"""

import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def load_model(model_dir):
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def make_prompt(vocab_size, length):
    # Ids from 3 upwards skip the usual <unk>/<s>/</s> slots.
    gen = torch.Generator().manual_seed(20250607)
    return torch.randint(3, vocab_size, (1, length), generator=gen)  # (1, T)


def timed_run(model, prompt, new_tokens):
    """Returns (prefill seconds, decode seconds) for one prompt + greedy decode."""
    start = time.perf_counter()
    out = model(input_ids=prompt, use_cache=True)
    prefill_secs = time.perf_counter() - start

    cache = out.past_key_values
    next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1)
    start = time.perf_counter()
    for _ in range(new_tokens):
        out = model(input_ids=next_id, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1)
    decode_secs = time.perf_counter() - start
    return prefill_secs, decode_secs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a Hugging Face model folder")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.model_dir)
    prompt = make_prompt(model.config.vocab_size, args.prompt_tokens)

    with torch.inference_mode():
        timed_run(model, prompt, args.new_tokens)  # warm-up, not counted
        runs = [timed_run(model, prompt, args.new_tokens) for _ in range(args.repeats)]

    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    result = {
        "implementation": "transformers",
        "model": args.model_dir,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "threads": args.threads,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "prompt_tokens_per_sec": args.prompt_tokens / prefill,
        "generation_tokens_per_sec": args.new_tokens / decode,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
