//! Writing trained weights in Hugging Face and PEFT layouts.
//!
//! - `head.safetensors`: `classifier.weight` `[C, h]`, `classifier.bias` `[C]` (every method).
//! - `model/` (FT, LP-FT): `config.json`, `model.safetensors` with `*ForSequenceClassification`
//!   keys (`bert.` / `roberta.` / `mpnet.` + encoder, `classifier.*`), the tokenizer files, and
//!   `modeling_lpft.py`, named by the config's `auto_map`: the paper's head, the linear map
//!   `classifier` on the first token's final hidden state (not transformers' pooler head), so
//!   that `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)` and
//!   `pipeline("text-classification", ...)` give lpft's logits. `AutoModel` loads the encoder.
//! - `adapter/` (LoRA, LP-LoRA): PEFT's `adapter_config.json` (sorted keys, `peft_type: LORA`)
//!   and `adapter_model.safetensors` (metadata `format: pt`) with
//!   `base_model.model.<prefix>.<module>.lora_{A,B}.weight` and the head under
//!   `base_model.model.classifier.*` (`modules_to_save`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::config::Arch;
use crate::model::lora::LoraConfig;
use crate::model::{ModelFiles, SequenceClassifier};

fn pt_metadata() -> Option<HashMap<String, String>> {
    Some(HashMap::from([("format".to_string(), "pt".to_string())]))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        source: e,
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Writes `head.safetensors`.
pub(crate) fn write_head(model: &SequenceClassifier, path: &Path) -> Result<()> {
    let map = HashMap::from([
        ("classifier.weight".to_string(), model.head.weight.clone()),
        ("classifier.bias".to_string(), model.head.bias.clone()),
    ]);
    crate::fsutil::save_tensors_with_metadata(&map, pt_metadata(), path)
}

/// Writes the full model in Hugging Face layout under `dir`.
pub(crate) fn write_hf_model(
    model: &SequenceClassifier,
    files: &ModelFiles,
    labels: &[String],
    dir: &Path,
) -> Result<()> {
    let prefix = files.config.arch().prefix();
    let mut map: HashMap<String, Tensor> = model
        .encoder
        .parameters()
        .into_iter()
        .filter(|(k, _)| !k.contains("lora_"))
        .map(|(k, t)| (format!("{prefix}.{k}"), t))
        .collect();
    map.insert("classifier.weight".into(), model.head.weight.clone());
    map.insert("classifier.bias".into(), model.head.bias.clone());
    crate::fsutil::save_tensors_with_metadata(&map, pt_metadata(), &dir.join("model.safetensors"))?;
    let cfg_path = files.weights.with_file_name("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json {
        path: cfg_path.clone(),
        source: e,
    })?;
    if let Some(obj) = cfg.as_object_mut() {
        let id2label: BTreeMap<String, String> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l.clone()))
            .collect();
        let label2id: BTreeMap<String, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), i))
            .collect();
        obj.insert("id2label".into(), serde_json::json!(id2label));
        obj.insert("label2id".into(), serde_json::json!(label2id));
        obj.insert(
            "lpft_head".into(),
            serde_json::json!("classifier: linear map on the first token's final hidden state"),
        );
        obj.insert(
            "auto_map".into(),
            serde_json::json!({
                "AutoModelForSequenceClassification": "modeling_lpft.LpftForSequenceClassification"
            }),
        );
        obj.insert(
            "architectures".into(),
            serde_json::json!(["LpftForSequenceClassification"]),
        );
    }
    write_json(&dir.join("config.json"), &cfg)?;
    crate::fsutil::write_atomic(
        &dir.join("modeling_lpft.py"),
        modeling_file(files.config.arch()).as_bytes(),
    )?;
    // The tokenizer, and the files that let `AutoTokenizer` pick its class and special tokens.
    let src_dir = files.tokenizer.parent().unwrap_or(Path::new("."));
    let bytes = std::fs::read(&files.tokenizer).map_err(|e| Error::io(&files.tokenizer, e))?;
    crate::fsutil::write_atomic(&dir.join("tokenizer.json"), &bytes)?;
    for name in TOKENIZER_EXTRAS {
        let src = src_dir.join(name);
        if src.exists() {
            let bytes = std::fs::read(&src).map_err(|e| Error::io(&src, e))?;
            crate::fsutil::write_atomic(&dir.join(name), &bytes)?;
        }
    }
    Ok(())
}

/// Tokenizer files copied beside `tokenizer.json` when the model has them.
const TOKENIZER_EXTRAS: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

/// The `auto_map` modelling file of `model/`: the paper's head (the first token's final hidden
/// state, one linear layer) on transformers' own encoder class for `arch`.
fn modeling_file(arch: Arch) -> String {
    let (module, encoder) = match arch {
        Arch::Bert => ("bert", "BertModel"),
        Arch::Roberta => ("roberta", "RobertaModel"),
        Arch::Mpnet => ("mpnet", "MPNetModel"),
    };
    include_str!("../../assets/modeling_lpft.py")
        .replace("{module}", module)
        .replace("{encoder}", encoder)
        .replace("{prefix}", arch.prefix())
}

/// Writes the LoRA adapter and head in PEFT layout under `dir`.
pub(crate) fn write_peft_adapter(
    model: &SequenceClassifier,
    files: &ModelFiles,
    lora: &LoraConfig,
    base_model: &str,
    dir: &Path,
) -> Result<()> {
    let prefix = files.config.arch().prefix();
    let mut map: HashMap<String, Tensor> = model
        .encoder
        .parameters()
        .into_iter()
        .filter(|(k, _)| k.contains("lora_"))
        .map(|(k, t)| (format!("base_model.model.{prefix}.{k}"), t))
        .collect();
    if map.is_empty() {
        return Err(Error::InvalidArgument {
            field: "lora.targets".into(),
            reason: format!("no module matched {:?}", lora.targets),
        });
    }
    map.insert(
        "base_model.model.classifier.weight".into(),
        model.head.weight.clone(),
    );
    map.insert(
        "base_model.model.classifier.bias".into(),
        model.head.bias.clone(),
    );
    crate::fsutil::save_tensors_with_metadata(
        &map,
        pt_metadata(),
        &dir.join("adapter_model.safetensors"),
    )?;
    // PEFT matches `target_modules` against module names: write the names of the layers that
    // were adapted (MPNet's `q`, `v` where the run said `query`, `value`).
    let targets: std::collections::BTreeSet<&str> = map
        .keys()
        .filter_map(|k| k.strip_suffix(".lora_A.weight"))
        .filter_map(|m| m.rsplit('.').next())
        .collect();
    // serde_json's default map is a BTreeMap: keys come out sorted.
    let cfg = serde_json::json!({
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "modules_to_save": ["classifier"],
        "peft_type": "LORA",
        "r": lora.r,
        "target_modules": targets,
        "task_type": "SEQ_CLS",
    });
    write_json(&dir.join("adapter_config.json"), &cfg)
}
