#!/usr/bin/env python3
"""CPU LoRA training throughput of Hugging Face PEFT + PyTorch, for comparison with
ctiforge's training loop on the same model, recipe and micro-batches.

Usage:
    cargo run -p ctiforge-train --example tram_rows -- rows.jsonl --steps 40 [--model DIR]
    python reference_lora_bench.py MODEL_DIR rows.jsonl [--threads 2] [--attn sdpa]
(`cargo xtask bench-train` runs both, and ctiforge on the same rows.)

`rows.jsonl` holds the tokenised TRAM training rows in ctiforge's batch order (one line
per example: step, micro_batch, tokens, loss_from). The recipe is
`configs/train/tram-lora.toml`'s: LoRA rank 8, alpha 16, dropout 0.05 on all seven
projections; AdamW lr 2e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01; 10 warm-up
steps then cosine decay over the run; gradient clipping at norm 1.0; each step's loss is
the sum of completion-token losses over its micro-batches divided by the step's loss
tokens (so accumulation weighs tokens, as ctiforge does); right padding with an
attention mask.

Prints one JSON object on stdout:
    steps                     optimizer steps timed (every step in the file)
    mean_tokens_per_sec       mean over steps of (input tokens / step time), the figure
                              tram_bench prints ("input tokens" excludes padding)
    tokens_per_sec            all input tokens / all step time
    median_step_secs          median wall time of one optimizer step
    first_loss, last_loss     training loss of the first and last step
    peak_rss_bytes            peak resident memory of the whole process
Each step is timed from building its micro-batches to the end of the optimizer update.
"""

import argparse
import json
import resource
import statistics
import sys
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM, get_cosine_schedule_with_warmup

# The batching and step shared with the parity test (same folder, so importable).
from peft_reference import read_steps, train_step

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def timed_step(model, optimizer, scheduler, micro_batches, pad_id):
    """One accumulated optimizer step and its schedule update; returns (loss, tokens)."""
    loss, _, tokens = train_step(model, optimizer, micro_batches, pad_id, 1.0)
    scheduler.step()
    return loss, tokens


def build(model_dir, attn, total_steps):
    base = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation=attn
    )
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules=TARGETS,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    model.train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.01,
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, 10, total_steps)
    return model, optimizer, scheduler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="a Hugging Face model folder")
    parser.add_argument("rows", help="JSONL written by the tram_rows example")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    steps = read_steps(args.rows)
    model, optimizer, scheduler = build(args.model_dir, args.attn, len(steps))
    pad_id = model.config.pad_token_id or model.config.eos_token_id or 0

    times, tps, losses, total_tokens = [], [], [], 0
    for micro_batches in steps:
        start = time.perf_counter()
        loss, tokens = timed_step(model, optimizer, scheduler, micro_batches, pad_id)
        secs = time.perf_counter() - start
        times.append(secs)
        tps.append(tokens / secs)
        losses.append(loss)
        total_tokens += tokens

    result = {
        "implementation": "peft+pytorch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": args.threads,
        "attn": args.attn,
        "steps": len(steps),
        "mean_tokens_per_sec": statistics.fmean(tps),
        "tokens_per_sec": total_tokens / sum(times),
        "median_step_secs": statistics.median(times),
        "total_step_secs": sum(times),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        # Linux reports ru_maxrss in KiB: the process's peak resident memory.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
