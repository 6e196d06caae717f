#!/usr/bin/env python3
"""Check that a finished lpft run loads in Hugging Face transformers / peft and gives lpft's logits.

For one run directory (`<out>/<task>/<method>/seed-<n>/`) this script checks:

full fine-tuning (`model/` present: config.json, model.safetensors, tokenizer.json)
  1. `AutoModel.from_pretrained(run/model)` loads every encoder tensor: transformers must strip the
     `bert.` prefix itself, report nothing but `pooler.*` as newly initialised, and every `bert.*`
     tensor of model.safetensors must equal the loaded parameter bit for bit.
  2. lpft's head, `classifier` from the same model.safetensors applied to the final hidden state of
     the first token, reproduces `predictions/test.safetensors` `logits` within --atol.
  3. (informational) `BertForSequenceClassification.from_pretrained(run/model)` loads, and which
     weights it reports missing (the pooler: lpft's head does not use it) or unused.

LoRA (`adapter/` present: adapter_config.json, adapter_model.safetensors)
  1. The base model (manifest.json `model_dir`, or --base-model) is loaded the way a user would:
     `AutoModelForSequenceClassification.from_pretrained(base, num_labels=N)`, so that its
     submodules are `bert` and `classifier` like the adapter's keys `base_model.model.bert....` and
     `base_model.model.classifier.*`; then `PeftModel.from_pretrained(model, run/adapter)`.
  2. Every tensor of adapter_model.safetensors is found, equal, in the PEFT model (lora_A/lora_B as
     `...lora_X.default.weight`, the head as `classifier.modules_to_save.default.*`); a second
     `set_peft_model_state_dict` of the same file must report no unexpected keys (peft ignores
     unmatched keys silently).
  3. lpft's head (the loaded `classifier` on the first token of `model.base_model.model.bert`)
     reproduces lpft's test logits within --atol, and so does the same after `merge_and_unload()`.
  4. The adapter's tensor names equal those that this peft's own `save_pretrained` writes for the
     same LoraConfig on the same base (informational: the config fields peft writes and lpft omits).
  5. (informational) a bare `AutoModel` base (no `bert.` submodule) with the same adapter: how many
     adapter keys peft silently drops there; the BertForSequenceClassification pooler head's logits;
     the logits with LoRA disabled (the trained head kept).

The test inputs are the task's test split (for CB: shared/data/superglue/CB/val.jsonl, premise and
hypothesis, in file order), tokenised with the model's tokenizer, truncation longest_first to the run
config's `tokenize.max_len`, padded to the longest row of each batch of `train.eval_batch_size`. Only
`pooling: "first"` runs are supported. The labels in predictions/test.safetensors are checked against
the file's labels as well. Everything runs in float32 on the CPU, in eval mode.

Exit status 0 when every check passes, 1 otherwise.

Versions this was run with (in /tmp/fixenv, see scripts/fixtures/requirements.txt for the others):
  torch==2.15.0  transformers==4.46.3  tokenizers==0.20.3  safetensors==0.8.0
  peft==0.13.2   (accelerate==1.15.0 came with it)

    /tmp/fixenv/bin/pip install peft==0.13.2
    HF_HUB_OFFLINE=1 /tmp/fixenv/bin/python scripts/check_export.py RUN_DIR \\
        [--base-model DIR] [--data FILE] [--atol 1e-4] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertForSequenceClassification,
)

# The text fields and label order of the tasks this script knows (the label order is lpft's ids).
TASKS = {
    "cb": {
        "file": "superglue/CB/val.jsonl",
        "fields": ("premise", "hypothesis"),
        "labels": ("entailment", "contradiction", "neutral"),
    },
}


class Checks:
    """Collects pass/fail results and informational values, and prints them as they come."""

    def __init__(self) -> None:
        self.results: list[dict] = []
        self.info: dict[str, object] = {}

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, name: str, value: object) -> None:
        self.info[name] = value
        print(f"[info] {name}: {value}")

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.results)


class LogCapture(logging.Handler):
    """Records what transformers logs while loading (the 'newly initialized' warnings)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "LogCapture":
        logging.getLogger("transformers.modeling_utils").addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger("transformers.modeling_utils").removeHandler(self)


def strip_prefix(key: str, prefix: str = "bert.") -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def newly_initialized(message: str) -> list[str]:
    """The weight names listed in transformers' '... are newly initialized: [...]' warning."""
    match = re.search(r"newly initialized: (\[[^\]]*\])", message)
    return list(ast.literal_eval(match.group(1))) if match else []


def read_rows(path: Path, fields: tuple[str, ...]) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                missing = [k for k in fields if k not in row]
                if missing:
                    raise SystemExit(f"{path}: row without {missing}")
                rows.append(row)
    return rows


def encode_batches(tokenizer, rows: list[dict], fields, max_len: int, batch_size: int):
    """Yields tokenised batches, padded only to the longest row of each batch."""
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        texts = [[r[k] for r in chunk] for k in fields]
        yield tokenizer(
            *texts,
            truncation="longest_first",
            max_length=max_len,
            padding="longest",
            return_tensors="pt",
        )


@torch.no_grad()
def first_token_logits(encoder, head, batches) -> torch.Tensor:
    """lpft's head: head(final hidden state of token 0), per batch, concatenated."""
    out = []
    for enc in batches:
        hidden = encoder(**enc).last_hidden_state
        out.append(head(hidden[:, 0, :]))
    return torch.cat(out).float()


@torch.no_grad()
def model_logits(model, batches) -> torch.Tensor:
    return torch.cat([model(**enc).logits for enc in batches]).float()


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def load_predictions(run: Path, checks: Checks, rows: list[dict], label_names) -> torch.Tensor:
    pred = load_file(str(run / "predictions" / "test.safetensors"))
    logits, labels = pred["logits"], pred["labels"]
    checks.check(
        "predictions/test.safetensors shape",
        logits.dtype == torch.float32 and tuple(logits.shape) == (len(rows), len(label_names)),
        f"logits {tuple(logits.shape)} {logits.dtype}, test rows {len(rows)}",
    )
    want = [label_names.index(r["label"]) for r in rows] if "label" in rows[0] else None
    if want is not None:
        checks.check(
            "predictions labels = test file labels, in file order",
            labels.tolist() == want,
            f"{sum(int(a == b) for a, b in zip(labels.tolist(), want))}/{len(want)} equal",
        )
    return logits


def check_ft(run: Path, cfg: dict, task: dict, rows, atol: float, checks: Checks) -> None:
    model_dir = run / "model"
    weights_path = model_dir / "model.safetensors"
    with safe_open(str(weights_path), "pt") as f:
        file_tensors = {k: f.get_tensor(k) for k in f.keys()}
    prefixed = {k: v for k, v in file_tensors.items() if k.startswith("bert.")}
    others = sorted(k for k in file_tensors if not k.startswith("bert."))
    checks.note("model.safetensors keys", f"{len(prefixed)} 'bert.*' + {others}")

    # 1. AutoModel: transformers has to strip `bert.` (BertModel.base_model_prefix) by itself.
    with LogCapture() as log:
        encoder, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
    encoder.eval()
    checks.note("AutoModel class", type(encoder).__name__)
    checks.note("AutoModel missing_keys (newly initialized)", sorted(info["missing_keys"]))
    checks.note("AutoModel unexpected_keys (not used)", sorted(info["unexpected_keys"]))
    bad_missing = [k for k in info["missing_keys"] if not strip_prefix(k).startswith("pooler.")]
    checks.check(
        "AutoModel: no encoder weight newly initialized",
        not bad_missing and not info["mismatched_keys"] and not info["error_msgs"],
        f"non-pooler missing {bad_missing}, mismatched {info['mismatched_keys']}",
    )
    init_lines = [m for m in log.messages if "newly initialized" in m]
    enc_in_warning = [k for m in init_lines for k in newly_initialized(m) if not strip_prefix(k).startswith("pooler.")]
    checks.check(
        "AutoModel: 'newly initialized' warning names only the pooler",
        not enc_in_warning,
        f"{len(init_lines)} such warning(s); non-pooler entries {enc_in_warning}",
    )
    state = encoder.state_dict()
    unequal = [
        k for k, v in prefixed.items() if k[5:] not in state or not torch.equal(state[k[5:]], v)
    ]
    checks.check(
        "AutoModel: every bert.* tensor loaded bit for bit (prefix stripped)",
        not unequal,
        f"{len(prefixed) - len(unequal)}/{len(prefixed)} equal" + (f"; not: {unequal[:5]}" if unequal else ""),
    )

    # 2. lpft's head on the first token.
    w, b = file_tensors["classifier.weight"], file_tensors["classifier.bias"]
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    head.load_state_dict({"weight": w, "bias": b})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batches = list(encode_batches(tokenizer, rows, task["fields"], cfg["max_len"], cfg["batch_size"]))
    ours = first_token_logits(encoder, head, batches)
    theirs = load_predictions(run, checks, rows, task["labels"])
    diff = max_abs(ours, theirs)
    checks.check("FT logits (AutoModel + classifier on token 0) = lpft's", diff <= atol, f"max |diff| = {diff:.3e}")
    checks.info["ft_max_abs_diff"] = diff
    agree = int((ours.argmax(1) == theirs.argmax(1)).sum())
    checks.note("FT argmax agreement", f"{agree}/{len(rows)}")

    # 3. BertForSequenceClassification (informational): loads, but its head goes through the pooler.
    with LogCapture():
        seq, sinfo = BertForSequenceClassification.from_pretrained(model_dir, output_loading_info=True)
    seq.eval()
    checks.note("BertForSequenceClassification num_labels", seq.config.num_labels)
    checks.note("BertForSequenceClassification missing_keys", sorted(sinfo["missing_keys"]))
    checks.note("BertForSequenceClassification unexpected_keys", sorted(sinfo["unexpected_keys"]))
    checks.check(
        "BertForSequenceClassification: loads; only the pooler missing",
        all(k.startswith("bert.pooler.") for k in sinfo["missing_keys"])
        and not sinfo["mismatched_keys"]
        and not sinfo["error_msgs"],
        "",
    )
    checks.check(
        "BertForSequenceClassification: classifier = lpft's",
        torch.equal(seq.classifier.weight, w) and torch.equal(seq.classifier.bias, b),
    )
    checks.note(
        "BertForSequenceClassification(...).logits vs lpft (random pooler, not lpft's head)",
        f"max |diff| = {max_abs(model_logits(seq, batches), theirs):.3e}",
    )


def adapter_key_in_model(key: str, adapter_name: str = "default") -> str:
    """Where peft puts a saved adapter tensor: lora_A.weight -> lora_A.default.weight, and
    classifier.weight -> classifier.modules_to_save.default.weight."""
    for part in ("lora_A", "lora_B"):
        if f".{part}." in key:
            return key.replace(f".{part}.", f".{part}.{adapter_name}.")
    return key.replace(".classifier.", f".classifier.modules_to_save.{adapter_name}.")


def check_lora(run: Path, cfg: dict, task: dict, rows, base_dir: Path, atol: float, checks: Checks) -> None:
    import peft
    from peft import PeftModel
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    adapter_dir = run / "adapter"
    adapter_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    checks.note("adapter_config.json", adapter_cfg)
    file_tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    head_keys = [k for k, v in file_tensors.items() if ".classifier." in k and k.endswith(".weight") and v.ndim == 2]
    num_labels = file_tensors[head_keys[0]].shape[0] if head_keys else len(task["labels"])
    checks.note("adapter tensors", f"{len(file_tensors)} (classifier {num_labels} labels)")
    checks.note("base model dir", str(base_dir))

    # The config must build with the installed peft (unknown fields raise TypeError in 0.13.x).
    try:
        pcfg = peft.PeftConfig.from_pretrained(str(adapter_dir))
        checks.check("adapter_config.json parses as", True, f"{type(pcfg).__name__}, task_type {pcfg.task_type}")
    except Exception as exc:  # noqa: BLE001 - reported, then the run stops here
        checks.check("adapter_config.json parses", False, repr(exc))
        return

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    batches = list(encode_batches(tokenizer, rows, task["fields"], cfg["max_len"], cfg["batch_size"]))
    theirs = load_predictions(run, checks, rows, task["labels"])

    # 1. The natural way: a SequenceClassification base, whose submodules are `bert` + `classifier`.
    with LogCapture():
        base, binfo = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=num_labels, output_loading_info=True
        )
    checks.note("base AutoModelForSequenceClassification class", type(base).__name__)
    checks.note("base missing_keys (newly initialized)", sorted(binfo["missing_keys"]))
    checks.check(
        "base: encoder fully loaded from the prefix-less checkpoint (only classifier.* new)",
        all(k.startswith("classifier.") for k in binfo["missing_keys"]) and not binfo["mismatched_keys"],
    )
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    checks.note("PeftModel class", type(model).__name__)

    # 2. Every adapter tensor really is in the model (peft drops unmatched keys without a word).
    state = model.state_dict()
    missing, unequal = [], []
    for k, v in file_tensors.items():
        target = adapter_key_in_model(k)
        if target not in state:
            missing.append(f"{k} -> {target}")
        elif not torch.equal(state[target].cpu(), v):
            unequal.append(k)
    checks.check(
        "every adapter tensor loaded into the PEFT model, bit for bit",
        not missing and not unequal,
        f"{len(file_tensors) - len(missing) - len(unequal)}/{len(file_tensors)} equal"
        + (f"; absent {missing[:4]}" if missing else "")
        + (f"; unequal {unequal[:4]}" if unequal else ""),
    )
    model_b_key = next(k for k in state if ".lora_B.default." in k)
    file_b_key = model_b_key.replace(".lora_B.default.", ".lora_B.")
    file_b = file_tensors.get(file_b_key)
    checks.note(
        f"{model_b_key}: max|.| in model / in file",
        f"{float(state[model_b_key].abs().max()):.4e} / "
        + (f"{float(file_b.abs().max()):.4e}" if file_b is not None else "absent from file"),
    )
    reload = set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir), device="cpu"))
    checks.check(
        "set_peft_model_state_dict(adapter file): no unexpected keys",
        not reload.unexpected_keys,
        f"unexpected {list(reload.unexpected_keys)[:4]}",
    )
    lora_layers = [n for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]
    want_layers = len([k for k in file_tensors if ".lora_A." in k])
    checks.check("LoRA layers in the model = lora_A tensors in the file", len(lora_layers) == want_layers,
                 f"{len(lora_layers)} vs {want_layers}")
    scalings = sorted(
        {float(m.scaling["default"]) for m in model.modules() if "default" in (getattr(m, "scaling", None) or {})}
    )
    checks.note("LoRA scaling (lora_alpha / r)", scalings)

    # 3. lpft's head: loaded classifier (modules_to_save) on token 0 of the adapted encoder.
    inner = model.base_model.model
    ours = first_token_logits(inner.bert, inner.classifier, batches)
    diff = max_abs(ours, theirs)
    checks.check(
        "LoRA logits (PeftModel bert + classifier on token 0) = lpft's", diff <= atol, f"max |diff| = {diff:.3e}"
    )
    checks.info["lora_max_abs_diff"] = diff
    agree = int((ours.argmax(1) == theirs.argmax(1)).sum())
    checks.note("LoRA argmax agreement", f"{agree}/{len(rows)}")
    pooler_diff = max_abs(model_logits(model, batches), theirs)
    checks.note("PeftModel(...).logits vs lpft (pooler head, not lpft's)", f"max |diff| = {pooler_diff:.3e}")
    with model.disable_adapter():  # LoRA off; the trained head used explicitly (disabling swaps it too)
        plain = first_token_logits(inner.bert, inner.classifier.modules_to_save["default"], batches)
    checks.note("LoRA disabled, trained head vs lpft (LoRA's effect)", f"max |diff| = {max_abs(plain, theirs):.3e}")

    merged = model.merge_and_unload()
    merged.eval()
    mdiff = max_abs(first_token_logits(merged.bert, merged.classifier, batches), theirs)
    checks.check("merge_and_unload(): logits = lpft's", mdiff <= atol, f"max |diff| = {mdiff:.3e}")
    checks.info["lora_merged_max_abs_diff"] = mdiff

    # 4. Informational: what this peft itself writes for the same setup (save_pretrained of a fresh
    #    get_peft_model), next to lpft's files: tensor names and config fields.
    with LogCapture():
        fresh_base = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=num_labels)
    fresh_cfg = peft.LoraConfig(
        task_type=pcfg.task_type,
        r=pcfg.r,
        lora_alpha=pcfg.lora_alpha,
        lora_dropout=pcfg.lora_dropout,
        target_modules=sorted(pcfg.target_modules),
        modules_to_save=list(pcfg.modules_to_save or []),
        bias=pcfg.bias,
    )
    fresh = peft.get_peft_model(fresh_base, fresh_cfg)
    with tempfile.TemporaryDirectory() as tmp:
        fresh.save_pretrained(tmp)
        peft_keys = set(load_file(str(Path(tmp) / "adapter_model.safetensors")))
        peft_json = json.loads((Path(tmp) / "adapter_config.json").read_text())
    checks.check(
        "adapter tensor names = those peft's save_pretrained writes",
        peft_keys == set(file_tensors),
        f"only in lpft {sorted(set(file_tensors) - peft_keys)[:4]}, "
        f"only in peft {sorted(peft_keys - set(file_tensors))[:4]}",
    )
    checks.note("config fields peft writes that lpft omits (defaults apply)", sorted(set(peft_json) - set(adapter_cfg)))
    checks.note("config fields lpft writes that peft does not", sorted(set(adapter_cfg) - set(peft_json)))

    # 5. Informational: a bare AutoModel base. Its submodules have no `bert.`, so the adapter's
    #    `base_model.model.bert.*` keys match nothing and peft drops them silently.
    with LogCapture():
        bare = AutoModel.from_pretrained(base_dir)
    bare_peft = PeftModel.from_pretrained(bare, str(adapter_dir))
    res = set_peft_model_state_dict(bare_peft, load_peft_weights(str(adapter_dir), device="cpu"))
    bare_state = bare_peft.state_dict()
    b_bare = model_b_key.replace("base_model.model.bert.", "base_model.model.")
    b_val = bare_state.get(b_bare)
    checks.note(
        "bare AutoModel base + PeftModel.from_pretrained (NOT the way to load it)",
        f"{type(bare_peft).__name__}; "
        f"{len(res.unexpected_keys)}/{len(file_tensors)} adapter keys unexpected (dropped); "
        f"{b_bare} max|.| = {float(b_val.abs().max()) if b_val is not None else 'absent'} (0 = never loaded)",
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="an lpft run directory (…/<task>/<method>/seed-<n>)")
    ap.add_argument("--base-model", type=Path, help="LoRA base model dir (default: manifest.json model_dir)")
    ap.add_argument("--data", type=Path, help="test split jsonl (default: shared/data/<task file>)")
    ap.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed (default 1e-4)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    run: Path = args.run
    run_cfg = json.loads((run / "config.json").read_text())
    task_name = run_cfg["task"]
    if task_name not in TASKS:
        raise SystemExit(f"task {task_name!r} unknown to this script (knows {sorted(TASKS)})")
    task = TASKS[task_name]
    if run_cfg.get("pooling", "first") != "first":
        raise SystemExit(f"pooling {run_cfg['pooling']!r}: only 'first' is supported")
    cfg = {
        "max_len": int(run_cfg["tokenize"]["max_len"]),
        "batch_size": int(run_cfg.get("train", {}).get("eval_batch_size", 32)),
    }
    data = args.data
    if data is None:
        if run_cfg.get("data_dir"):
            root = Path(run_cfg["data_dir"])
        else:  # shared/ beside the repository root
            root = Path(__file__).resolve().parents[2] / "shared" / "data"
        data = root / task["file"]
    rows = read_rows(data, task["fields"])

    torch.manual_seed(0)
    checks = Checks()
    checks.note("run", f"{run} (task {task_name}, method {run_cfg.get('method')})")
    checks.note("test split", f"{data} ({len(rows)} rows), max_len {cfg['max_len']}, batch {cfg['batch_size']}")
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    if (run / "adapter").is_dir():
        import peft

        versions["peft"] = peft.__version__
        base_dir = args.base_model
        if base_dir is None:
            base_dir = Path(json.loads((run / "manifest.json").read_text())["model_dir"])
        checks.note("versions", versions)
        check_lora(run, cfg, task, rows, base_dir, args.atol, checks)
    elif (run / "model").is_dir():
        checks.note("versions", versions)
        check_ft(run, cfg, task, rows, args.atol, checks)
    else:
        raise SystemExit(f"{run}: neither model/ nor adapter/ found")

    n_fail = sum(not r["ok"] for r in checks.results)
    print(f"{len(checks.results) - n_fail} passed, {n_fail} failed")
    if args.json:
        args.json.write_text(json.dumps({"results": checks.results, "info": checks.info}, indent=2, default=str))
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
