#!/usr/bin/env python3
"""PyTorch baseline for `lpft bench`: the same workloads on the same batch, CPU, fp32.

    HF_HUB_OFFLINE=1 python bench/pytorch/bench.py MODEL_DIR --workload ft-step [--threads 2]

Workloads (one per process, so peak memory is the workload's own):
  forward     eval mode, torch.no_grad, BertModel on 16 x 128 tokens
  ft-step     linear head on the first token, CE loss, backward, clip_grad_norm_(1.0), AdamW step;
              dropout on (train mode) unless --no-dropout (eval mode)
  lora-step   the same with peft LoRA r 8, alpha 8 on query/value (head trainable, encoder frozen)
  grad-logit  one sequence of 128 tokens, eval mode, gradient of one logit w.r.t. every parameter
  lp-fit      scikit-learn LogisticRegressionCV (the reference's LP) on CB's 225 training
              features (computed once, not timed)
  entk        the eNTK's F = J Jᵀ over every encoder parameter on the first --ntk-examples CB
              training pairs, each unpadded (batch 1), eval mode, random head V0: per example
              one forward and C vector-Jacobian products of s_c = v_c·φ (torch.autograd.grad),
              flattened into the rows of J (f32), then the Gram matrix in f64 over column
              blocks: what `lpft bench --workload entk --reference-examples 0` times
Inputs: the first 16 CB train (premise, hypothesis) pairs, truncated longest_first and padded to
exactly 128 tokens (what the reference implementation does). One warm-up, then the median and
minimum of --runs timed runs. Prints one JSON line, including peak RSS (ru_maxrss) in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import BertModel, BertTokenizerFast  # noqa: E402

LABELS = {"entailment": 0, "contradiction": 1, "neutral": 2}


class Classifier(torch.nn.Module):
    """The paper's model: encoder + linear head on dropout(first-token state)."""

    def __init__(self, encoder: BertModel, n_labels: int = 3):
        super().__init__()
        self.encoder = encoder
        h = encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(encoder.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(h, n_labels)
        torch.nn.init.normal_(self.classifier.weight, std=0.02)
        torch.nn.init.zeros_(self.classifier.bias)

    def forward(self, **batch):
        h = self.encoder(**batch).last_hidden_state[:, 0]
        return self.classifier(self.dropout(h))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--workload", choices=["forward", "ft-step", "lora-step", "grad-logit", "lp-fit", "entk"], required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-dropout", action="store_true")
    ap.add_argument("--data", type=Path, required=True, help="CB's train.jsonl (`lpft data --task cb --export DIR`)")
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (scripts/gpu-check.sh)")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast to bfloat16 (fp32 master weights)")
    ap.add_argument("--ntk-examples", type=int, default=16, help="entk: examples (J holds N·C·P f32 values)")
    args = ap.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
    batch_size = 1 if args.workload == "grad-logit" else args.batch
    rows = (rows * (batch_size // len(rows) + 1))[:batch_size]
    tok = BertTokenizerFast.from_pretrained(str(args.model_dir))
    batch = tok(
        [r["premise"] for r in rows],
        [r["hypothesis"] for r in rows],
        padding="max_length",
        truncation="longest_first",
        max_length=args.seq,
        return_tensors="pt",
    )
    labels = torch.tensor([LABELS[r["label"]] for r in rows]).to(device)
    batch = batch.to(device)
    encoder = BertModel.from_pretrained(str(args.model_dir), attn_implementation=args.attn, add_pooling_layer=False)
    model = Classifier(encoder).to(device)

    if args.workload == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                model.encoder(**batch)

    elif args.workload in ("ft-step", "lora-step"):
        if args.workload == "lora-step":
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=8, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, modules_to_save=["classifier"])
            model = get_peft_model(model, cfg)
        model.train(not args.no_dropout)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(**batch), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

    elif args.workload == "lp-fit":
        from sklearn.linear_model import LogisticRegressionCV

        all_rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
        train = all_rows[: len(all_rows) - -(-len(all_rows) // 10)]  # the paper's 9:1 split
        enc = tok([r["premise"] for r in train], [r["hypothesis"] for r in train], padding=True,
                  truncation="longest_first", max_length=args.seq, return_tensors="pt")
        model.eval()
        with torch.no_grad():
            x = model.encoder(**enc).last_hidden_state[:, 0].numpy()
        y = [LABELS[r["label"]] for r in train]
        batch_size = len(train)

        def step():
            LogisticRegressionCV(max_iter=5000, tol=1e-4, random_state=0).fit(x, y)

    elif args.workload == "entk":
        model.eval()
        all_rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").splitlines() if line.strip()]
        encs = [
            tok(r["premise"], r["hypothesis"], truncation="longest_first", max_length=args.seq, return_tensors="pt").to(device)
            for r in all_rows[: args.ntk_examples]
        ]
        params = list(model.encoder.parameters())
        v0 = model.classifier.weight.detach()
        n_params = sum(p.numel() for p in params)
        batch_size = len(encs)

        def step():
            c = v0.shape[0]
            jac = torch.empty(len(encs) * c, n_params, device=device)
            for i, enc in enumerate(encs):
                phi = model.encoder(**enc).last_hidden_state[0, 0]
                s = v0 @ phi
                for cc in range(c):
                    grads = torch.autograd.grad(s[cc], params, retain_graph=cc + 1 < c, allow_unused=True)
                    jac[i * c + cc] = torch.cat(
                        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)]
                    )
            kernel = torch.zeros(jac.shape[0], jac.shape[0], dtype=torch.float64, device=device)
            for k0 in range(0, n_params, 1 << 20):
                block = jac[:, k0 : k0 + (1 << 20)].double()
                kernel += block @ block.T
            return kernel

    else:
        model.eval()

        def step():
            model.zero_grad(set_to_none=True)
            model(**batch)[0, 0].backward()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            step()
        sync()

    run()
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "workload": args.workload,
                "batch": batch_size,
                "seq": args.seq,
                "threads": args.threads,
                "device": str(device),
                "bf16": args.bf16,
                "dropout": args.workload in ("ft-step", "lora-step") and not args.no_dropout,
                "seconds_median": round(statistics.median(times), 4),
                "seconds_min": round(min(times), 4),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "torch": torch.__version__,
                "attn": args.attn,
            }
        )
    )


if __name__ == "__main__":
    main()
