//! [`EntkConfig`]: which parameters θ the FT-effective kernel F is taken over, and how it is
//! computed (docs/method.md §7.1, §13).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The parameter set θ of `F(x, x′)_{cc′} = Σ_θ ⟨∂s_c(x)/∂θ, ∂s_{c′}(x′)/∂θ⟩` (docs/method.md §7.1).
///
/// Names are the encoder's checkpoint names without the architecture prefix, as listed by
/// [`crate::model::Encoder::parameters`] (e.g. `embeddings.word_embeddings.weight`,
/// `encoder.layer.0.attention.self.query.lora_B.weight`). The head (`classifier.*`) is never
/// part of θ: its contribution is P ([`crate::ntk::kernel::pretrain_kernel`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamSet {
    /// FT and LP-FT: every encoder parameter (word, position and token-type embeddings, every
    /// LayerNorm, every dense weight and bias); LoRA factors, if the model has any, excluded.
    Ft,
    /// LoRA and LP-LoRA: only the LoRA factors `lora_A`, `lora_B` (REF turns every other
    /// backbone parameter into a buffer).
    Lora,
    /// The encoder parameters whose name contains any of these substrings (e.g.
    /// `word_embeddings`, `LayerNorm`, `lora_B`): subsets for tests and per-group analyses.
    Matching(Vec<String>),
}

impl ParamSet {
    /// Whether the encoder parameter `name` belongs to θ.
    pub fn includes(&self, name: &str) -> bool {
        if name.starts_with("classifier.") {
            return false;
        }
        match self {
            ParamSet::Ft => !name.contains("lora_"),
            ParamSet::Lora => name.contains("lora_"),
            ParamSet::Matching(pats) => pats.iter().any(|p| name.contains(p.as_str())),
        }
    }
}

/// How the weight blocks `⟨G_c(x)ᵀX(x), G_{c′}(x′)ᵀX(x′)⟩_F` are contracted. Both are exact;
/// they differ only in cost and round-off order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Contraction {
    /// Per layer, whichever of the two below costs fewer multiply-adds for the lengths at hand.
    #[default]
    Auto,
    /// Form each per-example weight gradient `G_cᵀX` (d_out × d_in, a slice of output rows at a
    /// time) and take Gram matrices: cost ∝ (n·C)²·d_in·d_out per layer.
    Materialize,
    /// `Σ_{t,s} (G_c G′_{c′}ᵀ)_{ts} (X X′ᵀ)_{ts}` over token pairs: cost ∝
    /// n²·L·L′·(d_in + C²·d_out) per layer; cheaper for single-row layers (the first-token path's
    /// last layer) and short inputs.
    TokenPairs,
}

/// The arithmetic of the materialised weight-gradient contraction (the bulk of F's cost at the
/// paper's N; [`Contraction::Materialize`]). The factors X and G are f32 either way (they come
/// from the f32 forward and backward), and F, its group sums and every other block stay f64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ContractionPrecision {
    /// Gradient slices and their Gram products in f64.
    #[default]
    F64,
    /// Gradient slices and the Gram products of each run of
    /// [`GRAM_F32_SPAN`](crate::ntk::layerwise::GRAM_F32_SPAN) parameters in f32, those partial
    /// sums in f64: about 1.5× faster; F moves from the f64 one by a few 1e-8 of max |F| on
    /// MiniLM, and `tests/it/ntk.rs` bounds its distance from the reference at 3e-6.
    F32,
}

impl ContractionPrecision {
    /// Whether this is the default, f64 (configs leave it out when serialised).
    pub fn is_f64(&self) -> bool {
        *self == ContractionPrecision::F64
    }
}

/// Which forward pass produces φ(x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardPath {
    /// [`crate::model::Encoder::forward_first`] for first-token pooling: the last layer works on
    /// the first row only, so its X and G have one row (exact, cheaper). Mean pooling always
    /// uses the full forward.
    #[default]
    FirstToken,
    /// [`crate::model::Encoder::forward`] then the pooling: every layer keeps all rows (rows
    /// that do not reach φ get zero gradients). Same F; for checking the first-token path.
    Full,
}

/// Settings of the layer-wise eNTK ([`crate::ntk::layerwise`]). A config we own: strict,
/// validated once by [`EntkConfig::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntkConfig {
    /// The parameter set θ.
    pub params: ParamSet,
    /// How weight blocks are contracted.
    #[serde(default)]
    pub contraction: Contraction,
    /// Which forward pass produces φ.
    #[serde(default)]
    pub path: ForwardPath,
    /// Upper bound in bytes on the stored layer inputs and output gradients of all examples
    /// (estimated from the token counts). When the selected layers of all examples would need
    /// more, the encoder layers are processed in groups, one pass over the examples each (a
    /// full forward and C backward passes per example): more passes cost time, not accuracy.
    /// A single layer over the budget still gets its own pass.
    #[serde(default = "default_max_stored_bytes")]
    pub max_stored_bytes: usize,
    /// Run the per-example passes on candle's autograd over recorded probes (the reference)
    /// even where the own backward applies (the first-token path of a model
    /// [`crate::model::backprop::Backprop::supports`]). The two give the same F up to f32
    /// round-off (`tests/it/ntk.rs`); the own backward builds no graph and is faster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub autograd: bool,
    /// Arithmetic of the materialised contraction (f64 unless asked).
    #[serde(default, skip_serializing_if = "ContractionPrecision::is_f64")]
    pub precision: ContractionPrecision,
}

/// 4 GiB: 250 + 250 MiniLM examples of ~80 tokens fit in one pass.
fn default_max_stored_bytes() -> usize {
    4 << 30
}

impl EntkConfig {
    /// Defaults for a parameter set: automatic contraction, first-token path, 4 GiB of stored
    /// factors.
    pub fn new(params: ParamSet) -> Self {
        Self {
            params,
            contraction: Contraction::default(),
            path: ForwardPath::default(),
            max_stored_bytes: default_max_stored_bytes(),
            autograd: false,
            precision: ContractionPrecision::F64,
        }
    }

    /// Checks the values once; code after this trusts them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the field: an empty `Matching` list or pattern, or a
    /// zero `max_stored_bytes`.
    pub fn validate(&self) -> Result<()> {
        if let ParamSet::Matching(pats) = &self.params {
            if pats.is_empty() || pats.iter().any(String::is_empty) {
                return Err(Error::InvalidArgument {
                    field: "params".into(),
                    reason: "a matching parameter set needs non-empty name patterns".into(),
                });
            }
        }
        if self.max_stored_bytes == 0 {
            return Err(Error::InvalidArgument {
                field: "max_stored_bytes".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_select_by_name() {
        let q = "encoder.layer.0.attention.self.query.weight";
        let qa = "encoder.layer.0.attention.self.query.lora_A.weight";
        let w = "embeddings.word_embeddings.weight";
        assert!(ParamSet::Ft.includes(q) && ParamSet::Ft.includes(w));
        assert!(!ParamSet::Ft.includes(qa));
        assert!(ParamSet::Lora.includes(qa) && !ParamSet::Lora.includes(q));
        let m = ParamSet::Matching(vec!["word_embeddings".into()]);
        assert!(m.includes(w) && !m.includes(q));
        assert!(!ParamSet::Ft.includes("classifier.weight"));
        let mut cfg = EntkConfig::new(ParamSet::Matching(vec![]));
        assert!(cfg.validate().is_err());
        cfg.params = ParamSet::Ft;
        cfg.max_stored_bytes = 0;
        assert!(cfg.validate().is_err());
    }
}
