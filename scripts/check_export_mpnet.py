#!/usr/bin/env python3
"""Check that an MPNet run's exports load in transformers / peft and give lpft's test logits.

The MPNet counterpart of check_export.py (which is written around BERT's `bert.` submodule), for a CB run
(`<out>/cb/<method>/seed-<n>/`, pooling "first"):

- `model/` (FT, LP-FT): `AutoModel.from_pretrained(run/model)` must build an MPNetModel that initialises
  nothing but the pooler; the run's `classifier.*` on its first-token state must give
  `predictions/test.safetensors` logits.
- `adapter/` (LoRA, LP-LoRA): peft's `inject_adapter_in_model` with the adapter's own `r`, `lora_alpha` and
  `target_modules` (MPNet's `q`, `v`) on the base MPNetModel, then every `lora_A`/`lora_B` tensor loaded by
  name (none unexpected, none missing); the head on the first token must give the same logits.

CB's test split is SuperGLUE's val.jsonl in file order, tokenised with the base model's tokenizer (truncation
longest_first to the run's max_len, padded per batch of 32). Prints the largest logit difference.

    HF_HUB_OFFLINE=1 python scripts/check_export_mpnet.py RUN_DIR MPNET_DIR path/to/superglue/CB/val.jsonl

Last run (2026-12-03, transformers 4.46.3, peft 0.13.2, 1-epoch runs on 80 CB examples): LP-FT model/
1.2e-5, LP-LoRA adapter/ 2.2e-5 (logits of magnitude ~10).
"""
import json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, MPNetTokenizerFast
from peft import LoraConfig, inject_adapter_in_model

run = Path(sys.argv[1]); base_dir = sys.argv[2]; data = sys.argv[3]
cfg = json.loads((run / "config.json").read_text())
rows = [json.loads(l) for l in open(data)]
tok = MPNetTokenizerFast.from_pretrained(base_dir)
pred = load_file(str(run / "predictions/test.safetensors"))
want = pred["logits"]
def logits(encoder, w, b):
    out = []
    for i in range(0, len(rows), 32):
        chunk = rows[i:i+32]
        enc = tok([r["premise"] for r in chunk], [r["hypothesis"] for r in chunk], truncation="longest_first",
                  max_length=cfg.get("tokenize", {}).get("max_len", 128), padding="longest", return_tensors="pt")
        with torch.no_grad():
            h = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[:, 0]
        out.append(h @ w.T + b)
    return torch.cat(out)
if (run / "model").exists():
    enc, info = AutoModel.from_pretrained(str(run / "model"), output_loading_info=True)
    print("FT AutoModel class", type(enc).__name__, "missing", info["missing_keys"])
    sd = load_file(str(run / "model/model.safetensors"))
    got = logits(enc.eval(), sd["classifier.weight"], sd["classifier.bias"])
    print("FT max |logit diff|", (got - want).abs().max().item())
if (run / "adapter").exists():
    acfg = json.loads((run / "adapter/adapter_config.json").read_text())
    enc = AutoModel.from_pretrained(base_dir, add_pooling_layer=False).eval()
    enc = inject_adapter_in_model(LoraConfig(r=acfg["r"], lora_alpha=acfg["lora_alpha"], target_modules=acfg["target_modules"]), enc)
    sd = load_file(str(run / "adapter/adapter_model.safetensors"))
    lora = {k.replace("base_model.model.mpnet.", "").replace(".weight", ".default.weight"): v for k, v in sd.items() if "lora_" in k}
    missing, unexpected = enc.load_state_dict(lora, strict=False)
    print("LoRA unexpected", unexpected, "lora params missing", [m for m in missing if "lora_" in m])
    got = logits(enc, sd["base_model.model.classifier.weight"], sd["base_model.model.classifier.bias"])
    print("LoRA max |logit diff|", (got - want).abs().max().item())
