#!/usr/bin/env python3
"""PyTorch reference pipeline for the end-to-end comparison (`bench/e2e.sh`): the five methods on CB
the way the reference implementation (tom4649/lp-ft_ntk, docs/method.md §2-§5) does them, on MiniLM.

    HF_HUB_OFFLINE=1 python bench/pytorch/e2e.py --model-dir MODEL_DIR [--methods lp,ft,lp-ft,lora,lp-lora]
        [--seed 1001] [--epochs 10] [--max-train-samples K] [--threads 2] [--out e2e-torch.json]

What it does, per method (each timed as a whole: tokenizer and model loading, tokenisation, LP,
training, evaluation):
  data     CB superglue/CB/{train,val}.jsonl: the original train split cut 9:1 without shuffling
           (train 225 = first rows, validation 25 = last ceil(n/10) rows), the original val split is
           the test split (56); (premise, hypothesis) pairs; labels 0 entailment, 1 contradiction,
           2 neutral; --max-train-samples K keeps the first K training rows. Same as lpft.
  inputs   Hugging Face tokenizer, truncation longest_first to 128, every sequence padded to 128
           (padding="max_length"), as the reference does; the full BertModel forward (all tokens
           through the last layer), attention from transformers' default (sdpa) unless --attn.
  model    BertModel (no pooler) + nn.Dropout(0.1) + nn.Linear(hidden, C) on the last hidden state
           at position 0; head N(0, 0.02^2), bias 0, initialised after torch.manual_seed(model_seed).
  LP       eval-mode first-token features of the training split (no_grad, batches of the method's
           training batch size), scikit-learn LogisticRegressionCV(Cs=10, cv=5 (stratified, not
           shuffled), L2, lbfgs, multinomial, scoring accuracy, max_iter 5000, tol 1e-4,
           random_state=seed, refit); C >= 3: head <- (coef_, intercept_); binary: the reference's
           halving [-w/2; w/2], [-c/2; c/2]. Features in data order (--lp-order input, like lpft) or
           in a seeded shuffled order (--lp-order shuffled, like the reference's training
           dataloader; changes the CV folds).
  train    FT / LP-FT: every parameter; LoRA / LP-LoRA: peft LoraConfig(r 8, alpha 8, query+value,
           lora_dropout 0 (docs/method.md §2.3)), encoder frozen, head trainable. Table 6 batch size / lr for
           CB (FT 16 / 5e-5, LP-FT 8 / 5e-6, LoRA 16 / 1e-3, LP-LoRA 8 / 1e-4); 10 epochs; AdamW
           (0.9, 0.999, 1e-8, wd 0); linear decay to 0, no warm-up; clip_grad_norm_ 1.0; dropout 0.1
           (train mode); data order from torch.randperm with a generator seeded by --seed, a new
           permutation every epoch, last batch kept; mean cross-entropy.
  select   validation accuracy after every epoch (eval mode, batches of --eval-batch-size, default
           8 as the reference's per_device_eval_batch_size); the first epoch with the best accuracy
           is kept (a copy of the trainable parameters in memory; the reference's Trainer writes a
           checkpoint to disk instead, which this pipeline does not pay for), reloaded at the end
           and evaluated on validation and test.

Writes one JSON file (--out): per method wall_seconds, test_accuracy, test_f1_macro,
validation_accuracy, best_epoch, classifier_norm (||V||_F of the final head) and details; plus the
library versions, threads and machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

T_PROCESS = time.perf_counter()

DEFAULT_MODEL = Path("/tmp/lpft-home-test/models/all-MiniLM-L6-v2")
LABELS = ["entailment", "contradiction", "neutral"]
METHODS = ["lp", "ft", "lp-ft", "lora", "lp-lora"]
# Table 6 of the paper, CB column (docs/method.md §3): (batch size, learning rate). LP's batch size only
# sets the feature-extraction batch.
TABLE6_CB = {"lp": (8, None), "ft": (16, 5e-5), "lp-ft": (8, 5e-6), "lora": (16, 1e-3), "lp-lora": (8, 1e-4)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    ap.add_argument("--seed", type=int, default=1001, help="data order, dropout (and head/LoRA init unless --model-seed)")
    ap.add_argument("--model-seed", type=int, default=None, help="head and LoRA initialisation (default: --seed)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-train-samples", type=int, default=None, help="keep the first K training rows")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and BLAS/OpenMP threads)")
    ap.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="config.json, model.safetensors, tokenizer.json")
    ap.add_argument("--data-dir", type=Path, required=True, help="holds superglue/CB/{train,val}.jsonl (`lpft data --task cb --export DIR`)")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--eval-batch-size", type=int, default=8)
    ap.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    ap.add_argument("--lp-order", choices=["input", "shuffled"], default="input")
    ap.add_argument("--lp-max-iter", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=Path("e2e-torch.json"))
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    args = ap.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        ap.error(f"unknown method(s) {bad}; choose from {METHODS}")
    if args.model_seed is None:
        args.model_seed = args.seed
    return args


ARGS = parse_args()
# Thread counts must be fixed before numpy/torch load their thread pools.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import peft  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402
from transformers import AutoTokenizer, BertModel  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_PROCESS


def log(msg: str) -> None:
    if not ARGS.quiet:
        print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# data


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def label_id(v) -> int:
    if isinstance(v, str) and v in LABELS:
        return LABELS.index(v)
    return int(v)


def load_cb(data_dir: Path, max_train: int | None):
    """(train, validation, test) lists of (premise, hypothesis, label), the paper's split."""
    cb = data_dir / "superglue" / "CB"
    rows = read_jsonl(cb / "train.jsonl")
    n_val = -(-len(rows) // 10)  # ceil(n / 10), HF train_test_split(test_size=0.1, shuffle=False)
    train, val = rows[: len(rows) - n_val], rows[len(rows) - n_val :]
    if max_train is not None:
        train = train[:max_train]
    test = read_jsonl(cb / "val.jsonl")
    conv = lambda rs: [(r["premise"], r["hypothesis"], label_id(r["label"])) for r in rs]  # noqa: E731
    return conv(train), conv(val), conv(test)


def encode(tok, examples, max_len: int) -> dict[str, torch.Tensor]:
    enc = tok(
        [e[0] for e in examples],
        [e[1] for e in examples],
        padding="max_length",
        truncation="longest_first",
        max_length=max_len,
        return_tensors="pt",
    )
    out = {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc}
    out["labels"] = torch.tensor([e[2] for e in examples], dtype=torch.long)
    return out


def take(batch: dict[str, torch.Tensor], idx) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    inputs = {k: v[idx] for k, v in batch.items() if k != "labels"}
    return inputs, batch["labels"][idx]


# ---------------------------------------------------------------------------------------------
# model


class Classifier(torch.nn.Module):
    """The paper's model: encoder + linear head on dropout(last hidden state at position 0)."""

    def __init__(self, encoder: BertModel, n_labels: int):
        super().__init__()
        self.encoder = encoder
        h = encoder.config.hidden_size
        self.dropout = torch.nn.Dropout(encoder.config.hidden_dropout_prob)
        self.classifier = torch.nn.Linear(h, n_labels)
        torch.nn.init.normal_(self.classifier.weight, std=0.02)
        torch.nn.init.zeros_(self.classifier.bias)

    def features(self, **inputs) -> torch.Tensor:
        return self.encoder(**inputs).last_hidden_state[:, 0]

    def forward(self, **inputs) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(**inputs)))


@torch.no_grad()
def predict(model: Classifier, batch, batch_size: int) -> torch.Tensor:
    model.eval()
    n = batch["labels"].shape[0]
    out = []
    for s in range(0, n, batch_size):
        inputs, _ = take(batch, slice(s, s + batch_size))
        out.append(model(**inputs))
    return torch.cat(out) if out else torch.zeros(0, len(LABELS))


def metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    pred = logits.argmax(-1).numpy()
    y = labels.numpy()
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "f1_macro": float(f1_score(y, pred, labels=list(range(len(LABELS))), average="macro", zero_division=0)),
    }


# ---------------------------------------------------------------------------------------------
# LP


def lp_fit(model: Classifier, train, batch_size: int, seed: int) -> dict:
    """The reference's LP: LogisticRegressionCV on eval-mode first-token features; installs the head."""
    n = train["labels"].shape[0]
    if ARGS.lp_order == "shuffled":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    model.eval()
    feats = []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            inputs, _ = take(train, order[s : s + batch_size])
            feats.append(model.features(**inputs))
    x = torch.cat(feats).double().numpy()
    y = train["labels"][order].numpy()
    absent = [LABELS[k] for k in range(len(LABELS)) if not (y == k).any()]
    if absent:  # scikit-learn would fit fewer rows than the head has (lpft refuses too)
        sys.exit(f"LP: class(es) {absent} have no training example (raise --max-train-samples)")
    params = inspect.signature(LogisticRegressionCV).parameters
    kw = dict(Cs=10, cv=5, fit_intercept=True, solver="lbfgs", scoring="accuracy", max_iter=ARGS.lp_max_iter,
              tol=1e-4, random_state=seed, refit=True)
    if "l1_ratios" in params and "use_legacy_attributes" in params:  # scikit-learn >= 1.8
        kw.update(l1_ratios=(0.0,), use_legacy_attributes=False)
    else:
        kw["penalty"] = "l2"
        if "multi_class" in params and tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 5):
            kw["multi_class"] = "multinomial"  # the reference's setting (explicit before 1.5)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LogisticRegressionCV(**kw).fit(x, y)
    fit_s = time.perf_counter() - t0
    coef, intercept = clf.coef_, clf.intercept_
    binary = coef.shape[0] == 1
    if binary:  # the reference's installation for two classes (docs/method.md §2.1 step 3)
        w, c = coef[0], intercept[0]
        coef, intercept = np.stack([-w / 2, w / 2]), np.array([-c / 2, c / 2])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(coef).float())
        model.classifier.bias.copy_(torch.from_numpy(intercept).float())
    scores = clf.scores_
    if isinstance(scores, dict):
        scores = next(iter(scores.values()))
    scores = np.asarray(scores).reshape(np.asarray(scores).shape[0], -1)  # [folds, Cs]
    return {
        "c": float(np.ravel(clf.C_)[0]),
        "cs": [float(c) for c in clf.Cs_],
        "cv_mean_accuracy": [float(v) for v in scores.mean(axis=0)],
        "cv_max_n_iter": int(np.max(clf.n_iter_)),
        "train_accuracy": float(clf.score(x, y)),
        "head_norm": float(np.linalg.norm(coef)),
        "binary_halving": bool(binary),
        "fit_seconds": fit_s,
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:160]}" for w in caught}),
    }


# ---------------------------------------------------------------------------------------------
# one method


def run_method(method: str) -> dict:
    t0 = time.perf_counter()
    bs, lr = TABLE6_CB[method]
    tok = AutoTokenizer.from_pretrained(str(ARGS.model_dir))
    train_ex, val_ex, test_ex = load_cb(ARGS.data_dir, ARGS.max_train_samples)
    train, val, test = (encode(tok, e, ARGS.max_len) for e in (train_ex, val_ex, test_ex))
    encoder = BertModel.from_pretrained(str(ARGS.model_dir), add_pooling_layer=False, attn_implementation=ARGS.attn)
    torch.manual_seed(ARGS.model_seed)  # model_seed before model construction (head init)
    model = Classifier(encoder, len(LABELS))
    initial_norm = float(model.classifier.weight.detach().norm())
    out: dict = {"batch_size": bs, "lr": lr, "initial_classifier_norm": initial_norm}

    if method in ("lp", "lp-ft", "lp-lora"):
        out["lp"] = lp_fit(model, train, bs, ARGS.seed)
        log(f"[{method}] LP: C {out['lp']['c']:.4g}  ||V|| {out['lp']['head_norm']:.4f}  "
            f"train acc {out['lp']['train_accuracy']:.4f}  ({out['lp']['fit_seconds']:.1f}s fit)")

    history = []
    best_epoch = None
    if method != "lp":
        if method in ("lora", "lp-lora"):
            torch.manual_seed(ARGS.model_seed)  # LoRA A init
            cfg = LoraConfig(r=8, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, bias="none")
            get_peft_model(model, cfg)  # injects the adapters in place and freezes everything else
            model.classifier.requires_grad_(True)
        params = [p for p in model.parameters() if p.requires_grad]
        out["trainable_parameters"] = int(sum(p.numel() for p in params))
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        n = train["labels"].shape[0]
        steps_per_epoch = math.ceil(n / bs)
        total = ARGS.epochs * steps_per_epoch
        sched = transformers.get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total)
        loss_fn = torch.nn.CrossEntropyLoss()
        torch.manual_seed(ARGS.seed)  # seed before training: dropout
        gen = torch.Generator().manual_seed(ARGS.seed)  # data order
        best_acc, best_state = -1.0, None
        for epoch in range(1, ARGS.epochs + 1):
            te = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=gen)
            loss_sum = 0.0
            for s in range(0, n, bs):
                inputs, labels = take(train, perm[s : s + bs])
                loss = loss_fn(model(**inputs), labels)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                loss_sum += float(loss.detach())
            vm = metrics(predict(model, val, ARGS.eval_batch_size), val["labels"])
            rec = {"epoch": epoch, "train_loss": loss_sum / steps_per_epoch, "validation_accuracy": vm["accuracy"],
                   "classifier_norm": float(model.classifier.weight.detach().norm()), "seconds": time.perf_counter() - te}
            history.append(rec)
            log(f"[{method}] epoch {epoch:>2}: loss {rec['train_loss']:.4f}  val acc {vm['accuracy']:.4f}  "
                f"||V|| {rec['classifier_norm']:.4f}  {rec['seconds']:.1f}s")
            if vm["accuracy"] > best_acc:  # strictly better: the first best epoch is kept
                best_acc, best_epoch = vm["accuracy"], epoch
                best_state = {k: p.detach().clone() for k, p in named}
        with torch.no_grad():
            for k, p in named:
                p.copy_(best_state[k])

    vm = metrics(predict(model, val, ARGS.eval_batch_size), val["labels"])
    tm = metrics(predict(model, test, ARGS.eval_batch_size), test["labels"])
    wall = time.perf_counter() - t0
    out.update(
        wall_seconds=wall,
        test_accuracy=tm["accuracy"],
        test_f1_macro=tm["f1_macro"],
        validation_accuracy=vm["accuracy"],
        best_epoch=best_epoch,
        classifier_norm=float(model.classifier.weight.detach().norm()),
        split_sizes={"train": len(train_ex), "validation": len(val_ex), "test": len(test_ex)},
        history=history,
    )
    log(f"[{method}] test acc {tm['accuracy']:.4f}  f1 {tm['f1_macro']:.4f}  val acc {vm['accuracy']:.4f}  "
        f"best epoch {best_epoch}  ||V|| {out['classifier_norm']:.4f}  wall {wall:.1f}s")
    return out


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    for f in ("config.json", "tokenizer.json"):
        if not (ARGS.model_dir / f).is_file():
            sys.exit(f"{ARGS.model_dir / f} not found (--model-dir: a Hugging Face BERT directory, e.g. `lpft fetch-model minilm`)")
    torch.set_num_threads(ARGS.threads)
    results = {}
    for m in ARGS.methods:
        results[m] = run_method(m)
    report = {
        "task": "cb",
        "pipeline": "pytorch-reference",
        "seed": ARGS.seed,
        "model_seed": ARGS.model_seed,
        "epochs": ARGS.epochs,
        "max_train_samples": ARGS.max_train_samples,
        "max_len": ARGS.max_len,
        "padding": "max_length",
        "attn": ARGS.attn,
        "eval_batch_size": ARGS.eval_batch_size,
        "lp_order": ARGS.lp_order,
        "model_dir": str(ARGS.model_dir),
        "threads": ARGS.threads,
        "import_seconds": IMPORT_SECONDS,
        "process_seconds": time.perf_counter() - T_PROCESS,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "sklearn": sklearn.__version__,
            "numpy": np.__version__,
        },
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu_model(), "platform": platform.platform()},
        "methods": results,
    }
    ARGS.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = ARGS.out.with_suffix(ARGS.out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(ARGS.out)
    print(json.dumps({m: {k: r[k] for k in ("wall_seconds", "test_accuracy", "validation_accuracy", "best_epoch",
                                                "classifier_norm")} for m, r in results.items()}))


if __name__ == "__main__":
    main()
