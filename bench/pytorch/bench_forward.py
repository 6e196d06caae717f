#!/usr/bin/env python3
"""PyTorch baseline for lpft's encoder forward: MiniLM (BertModel), batch 16 x 128 tokens, CPU.

    HF_HUB_OFFLINE=1 python bench/pytorch/bench_forward.py MODEL_DIR [--threads 2] [--runs 7]

MODEL_DIR holds config.json, model.safetensors and tokenizer.json (e.g. all-MiniLM-L6-v2, see
../shared/docs/models.md). Inputs are the first 16 CB train (premise, hypothesis) pairs, truncated
(longest_first) and padded to exactly 128 tokens. Eval mode, torch.no_grad, one warm-up run, then the median
and minimum of --runs timed runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertModel, BertTokenizerFast  # noqa: E402

BATCH = 16
SEQ = 128
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "superglue" / "CB" / "train.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7, help="timed runs (at least 5)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CB train.jsonl")
    ap.add_argument(
        "--attn",
        choices=["sdpa", "eager"],
        default="sdpa",
        help="attention kernel; sdpa is what transformers picks by default, eager is the textbook path",
    )
    args = ap.parse_args()
    if args.runs < 5:
        ap.error("--runs must be at least 5")

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = rows[:BATCH]
    tok = BertTokenizerFast.from_pretrained(str(args.model_dir))
    batch = tok(
        [r["premise"] for r in rows],
        [r["hypothesis"] for r in rows],
        padding="max_length",
        truncation="longest_first",
        max_length=SEQ,
        return_tensors="pt",
    )
    assert tuple(batch["input_ids"].shape) == (BATCH, SEQ)
    model = BertModel.from_pretrained(str(args.model_dir), attn_implementation=args.attn).eval()

    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            out = model(**batch).last_hidden_state
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt)
    assert out.shape == (BATCH, SEQ, model.config.hidden_size)

    print(
        json.dumps(
            {
                "workload": "forward",
                "batch": BATCH,
                "seq": SEQ,
                "threads": args.threads,
                "seconds_median": round(statistics.median(times), 6),
                "seconds_min": round(min(times), 6),
                "torch": torch.__version__,
                "attn": args.attn,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
