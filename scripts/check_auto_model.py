#!/usr/bin/env python3
"""Check that an FT / LP-FT run's `model/` loads where transformers users load models, and gives lpft's logits.

    python scripts/check_auto_model.py RUN_DIR CB_VAL_JSONL [--atol 1e-4]

1. `AutoModelForSequenceClassification.from_pretrained(RUN_DIR/model, trust_remote_code=True)` builds lpft's
   `modeling_lpft.LpftForSequenceClassification` (the config's `auto_map`): the encoder, then the paper's linear
   head on the first token.
2. Its logits on CB's test split (SuperGLUE's val.jsonl, premise/hypothesis in file order, the tokenizer saved in
   model/, truncation longest_first to the run's max_len, padded per batch of 32) equal lpft's
   `predictions/test.safetensors` within --atol.
3. `pipeline("text-classification", model=RUN_DIR/model, trust_remote_code=True)` predicts lpft's label for every
   example.

Exit status 0 when all hold, 1 otherwise. tests/it/export.rs runs it on the tiny BERT, RoBERTa and MPNet fixtures
when LPFT_PYTHON names a Python with torch and transformers (scripts/fixtures/requirements.txt).
"""

import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline  # noqa: E402
from transformers.utils import logging  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("data")
    ap.add_argument("--atol", type=float, default=1e-4)
    a = ap.parse_args()
    logging.set_verbosity_error()
    model_dir = os.path.join(a.run, "model")
    cfg = json.load(open(os.path.join(a.run, "config.json")))
    max_len = cfg["tokenize"]["max_len"]
    rows = [json.loads(line) for line in open(a.data)]
    want = load_file(os.path.join(a.run, "predictions", "test.safetensors"))["logits"]

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    got = []
    for i in range(0, len(rows), 32):
        chunk = rows[i : i + 32]
        enc = tok(
            [r["premise"] for r in chunk],
            [r["hypothesis"] for r in chunk],
            truncation="longest_first",
            max_length=max_len,
            padding="longest",
            return_tensors="pt",
        )
        with torch.no_grad():
            got.append(model(**enc).logits)
    diff = (torch.cat(got) - want).abs().max().item()
    ok = type(model).__name__ == "LpftForSequenceClassification" and diff <= a.atol
    print(f"{type(model).__name__}: max |logit - lpft's| = {diff:.3e} (atol {a.atol:g})")

    pipe = pipeline("text-classification", model=model_dir, trust_remote_code=True)
    preds = pipe(
        [{"text": r["premise"], "text_pair": r["hypothesis"]} for r in rows], truncation=True, max_length=max_len
    )
    labels = [model.config.id2label[int(i)] for i in want.argmax(-1)]
    agree = sum(p["label"] == label for p, label in zip(preds, labels))
    print(f"pipeline: {agree}/{len(rows)} labels as lpft's")
    ok = ok and agree == len(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
