#!/usr/bin/env python3
"""Hugging Face PEFT as the reference for ctiforge's LoRA adapter files.

The Rust test `model/tests/peft.rs` runs this file with the interpreter printed by
`ci/setup-reference.sh` (passed in as `CTIFORGE_REF_PYTHON`) and compares its JSON with
what ctiforge computes for the same base folder, adapter and token ids.

Usage:
    python peft_reference.py apply BASE_DIR ADAPTER_DIR --tokens 1,2,3 [--merged-out DIR]
        Loads an adapter folder (written by ctiforge) with `PeftModel.from_pretrained`.
        With --merged-out, also runs `merge_and_unload()` and saves the merged model there
        with `save_pretrained` (safetensors).
    python peft_reference.py make BASE_DIR ADAPTER_DIR --tokens 1,2,3 --rank R --alpha A
                              --targets q_proj,v_proj [--layers 1,3] [--rslora] [--seed S]
        Creates an adapter with `get_peft_model` and random A and B
        (`init_lora_weights=False`) and saves it with `save_pretrained`.
    python peft_reference.py train BASE_DIR INIT_ADAPTER_DIR ROWS.jsonl --lrs 1e-4,2e-4,...
                              [--betas 0.9,0.999] [--eps 1e-8] [--weight-decay 0.01]
                              [--max-grad-norm 1.0] [--save-adapter DIR]
        Loads INIT_ADAPTER_DIR as a trainable PeftModel and trains it with torch's AdamW on
        the micro-batches of ROWS.jsonl (written by ctiforge's `write_step_rows`), one
        optimizer step per `step`, at the given learning rate for each step. Prints
        {"losses": [...], "grad_norms": [...]} (grad norms before clipping).

`apply` and `make` print one JSON object on stdout:
    logits          [[vocab floats] per position] of the adapted model
    merged_logits   the same after merge_and_unload (apply with --merged-out only)
    lora_modules    sorted names of the modules PEFT gave a LoRA path
    scaling         {module name: the factor PEFT applies to B A x}
    peft_version    the installed peft version

Everything runs on the CPU in float32 with eager attention.
"""

import argparse
import json
import sys
from collections import defaultdict

import peft
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers import LlamaForCausalLM

ADAPTER = "default"


def parse_ids(text):
    ids = [int(tok) for tok in text.split(",") if tok.strip()]
    if not ids:
        sys.exit(f"peft_reference: empty token list {text!r}")
    return ids


def load_base(base_dir):
    model = LlamaForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def logits(model, ids):
    input_ids = torch.tensor([ids], dtype=torch.long)  # (1, T)
    with torch.inference_mode():
        out = model(input_ids=input_ids, use_cache=False).logits  # (1, T, vocab)
    return out[0].tolist()


def lora_report(model):
    """The modules that carry a LoRA path, and each one's scaling factor."""
    modules, scaling = [], {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            # PeftModel prefixes "base_model.model."; report the plain HF module name.
            short = name.removeprefix("base_model.model.")
            modules.append(short)
            scaling[short] = float(module.scaling[ADAPTER])
    return sorted(modules), scaling


def apply(args):
    ids = parse_ids(args.tokens)
    model = PeftModel.from_pretrained(load_base(args.base_dir), args.adapter_dir)
    model.eval()
    modules, scaling = lora_report(model)
    result = {
        "logits": logits(model, ids),
        "lora_modules": modules,
        "scaling": scaling,
        "peft_version": peft.__version__,
    }
    if args.merged_out:
        merged = model.merge_and_unload()
        result["merged_logits"] = logits(merged, ids)
        merged.save_pretrained(args.merged_out, safe_serialization=True)
    return result


def make(args):
    ids = parse_ids(args.tokens)
    base = load_base(args.base_dir)
    config = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=0.0,
        target_modules=args.targets.split(","),
        layers_to_transform=parse_ids(args.layers) if args.layers else None,
        use_rslora=args.rslora,
        init_lora_weights=False,  # B random too, so the adapter changes the outputs
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(args.seed)
    model = get_peft_model(base, config)
    model.eval()
    model.save_pretrained(args.adapter_dir, safe_serialization=True)
    modules, scaling = lora_report(model)
    return {
        "logits": logits(model, ids),
        "lora_modules": modules,
        "scaling": scaling,
        "peft_version": peft.__version__,
    }


def read_steps(path):
    """The micro-batches of every step in a rows file: [[[(tokens, loss_from), ...], ...]]."""
    steps = defaultdict(lambda: defaultdict(list))
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            steps[row["step"]][row["micro_batch"]].append((row["tokens"], row["loss_from"]))
    if not steps:
        sys.exit(f"peft_reference: no rows in {path}")
    return [[mb for _, mb in sorted(steps[s].items())] for s in sorted(steps)]


def collate(rows, pad_id):
    """Right-padded inputs, attention mask and next-token targets (-100 where no loss),
    and the number of real input tokens."""
    seq = max(len(tokens) - 1 for tokens, _ in rows)
    input_ids = torch.full((len(rows), seq), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(rows), seq), dtype=torch.long)  # (B, T)
    targets = torch.full((len(rows), seq), -100, dtype=torch.long)  # (B, T)
    input_tokens = 0
    for b, (tokens, loss_from) in enumerate(rows):
        n = len(tokens) - 1
        input_tokens += n
        input_ids[b, :n] = torch.tensor(tokens[:-1])
        mask[b, :n] = 1
        # Position i predicts token i + 1, which carries loss from index loss_from on.
        start = max(loss_from, 1) - 1
        targets[b, start:n] = torch.tensor(tokens[start + 1 : n + 1])
    return input_ids, mask, targets, input_tokens


def train_step(model, optimizer, micro_batches, pad_id, max_grad_norm):
    """One accumulated optimizer step: each micro-batch's summed completion-token loss is
    divided by the step's loss tokens, so accumulation weighs tokens as ctiforge does.
    Returns (loss, grad norm before clipping, input tokens)."""
    batches = [collate(rows, pad_id) for rows in micro_batches]
    loss_tokens = sum(int((t != -100).sum()) for _, _, t, _ in batches)
    total_loss, input_tokens = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    for input_ids, mask, targets, n in batches:
        logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="sum"
        ) / max(loss_tokens, 1)
        loss.backward()
        total_loss += loss.item()
        input_tokens += n
    params = [p for p in model.parameters() if p.requires_grad]
    if max_grad_norm is None:
        norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params if p.grad is not None))
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=max_grad_norm)
    optimizer.step()
    return total_loss, float(norm), input_tokens


def train(args):
    lrs = [float(x) for x in args.lrs.split(",")]
    steps = read_steps(args.rows)
    if len(lrs) != len(steps):
        sys.exit(f"peft_reference: {len(lrs)} learning rates for {len(steps)} steps")
    model = PeftModel.from_pretrained(
        load_base(args.base_dir), args.init_adapter_dir, is_trainable=True
    )
    model.train()
    beta1, beta2 = (float(x) for x in args.betas.split(","))
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=lrs[0],
        betas=(beta1, beta2),
        eps=args.eps,
        weight_decay=args.weight_decay,
    )
    pad_id = model.config.pad_token_id or model.config.eos_token_id or 0
    losses, norms = [], []
    for lr, micro_batches in zip(lrs, steps):
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, norm, _ = train_step(model, optimizer, micro_batches, pad_id, args.max_grad_norm)
        losses.append(loss)
        norms.append(norm)
    if args.save_adapter:
        model.save_pretrained(args.save_adapter, safe_serialization=True)
    return {"losses": losses, "grad_norms": norms, "peft_version": peft.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("apply", help="load a ctiforge adapter with PeftModel")
    p.add_argument("base_dir")
    p.add_argument("adapter_dir")
    p.add_argument("--tokens", required=True, help="comma-separated token ids")
    p.add_argument("--merged-out", help="save merge_and_unload()'s model here")

    p = sub.add_parser("make", help="create and save a random PEFT adapter")
    p.add_argument("base_dir")
    p.add_argument("adapter_dir")
    p.add_argument("--tokens", required=True, help="comma-separated token ids")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--alpha", type=float, required=True)
    p.add_argument("--targets", required=True, help="comma-separated module names")
    p.add_argument("--layers", help="comma-separated layer indices (default: all)")
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("train", help="train an adapter on ctiforge's micro-batches")
    p.add_argument("base_dir")
    p.add_argument("init_adapter_dir")
    p.add_argument("rows", help="JSONL of (step, micro_batch, tokens, loss_from)")
    p.add_argument("--lrs", required=True, help="comma-separated learning rate per step")
    p.add_argument("--betas", default="0.9,0.999")
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--max-grad-norm", type=float, default=None)
    p.add_argument("--save-adapter", help="save the trained adapter here")

    args = parser.parse_args()
    torch.set_num_threads(2)
    commands = {"apply": apply, "make": make, "train": train}
    result = commands[args.command](args)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
