//! The parameter catalogue: which recording sites a parameter set needs, and which gradient blocks each
//! site yields (its parameters' roles).

use super::*;

/// What a parameter is to its recording site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Weight,
    Bias,
    LoraA,
    LoraB,
    Gamma,
    Beta,
    Word,
    Position,
    TokenType,
    /// MPNet's relative attention bias table (its own site, a `Var` copy).
    RelativeBias,
}

/// A selected parameter: its report group and its role at the recording site.
#[derive(Debug, Clone)]
pub(super) struct ParamInfo {
    pub(super) group: ParamGroup,
    pub(super) role: Role,
}

/// A recording site with selected parameters.
#[derive(Debug, Clone)]
pub(super) struct SiteInfo {
    /// Name of the key parameter (for error messages).
    pub(super) key_name: String,
    /// Indices into `Catalog::params`, in catalogue order.
    pub(super) params: Vec<usize>,
    /// Pass unit: 0 = embeddings, l + 1 = encoder layer l.
    pub(super) unit: usize,
    /// Stored bytes per token of one example (estimate, for the memory budget).
    pub(super) bytes_per_token: usize,
}

pub(super) struct Catalog {
    pub(super) params: Vec<ParamInfo>,
    pub(super) sites: HashMap<TensorId, SiteInfo>,
    pub(super) units: usize,
    pub(super) parameters: usize,
}

/// MPNet's relative attention bias table.
const RELATIVE_BIAS: &str = "encoder.relative_attention_bias.weight";

/// The key parameter name and role of a parameter name, and its pass unit.
pub(super) fn classify(name: &str) -> Option<(String, Role, usize)> {
    // MPNet's bias table feeds every layer; it costs no storage, so it rides with the
    // embeddings' pass.
    if name == RELATIVE_BIAS {
        return Some((name.to_string(), Role::RelativeBias, 0));
    }
    let unit = if name.starts_with("embeddings.") {
        0
    } else {
        let rest = name.strip_prefix("encoder.layer.")?;
        let l: usize = rest.split('.').next()?.parse().ok()?;
        l + 1
    };
    let word = "embeddings.word_embeddings.weight".to_string();
    let (key, role) = match name {
        "embeddings.word_embeddings.weight" => (word, Role::Word),
        "embeddings.position_embeddings.weight" => (word, Role::Position),
        "embeddings.token_type_embeddings.weight" => (word, Role::TokenType),
        n if n.contains("LayerNorm.") => {
            let path = n.rsplit_once('.')?.0;
            let role = if n.ends_with(".weight") {
                Role::Gamma
            } else if n.ends_with(".bias") {
                Role::Beta
            } else {
                return None;
            };
            (format!("{path}.weight"), role)
        }
        n if n.ends_with(".lora_A.weight") => (
            format!("{}.weight", n.strip_suffix(".lora_A.weight")?),
            Role::LoraA,
        ),
        n if n.ends_with(".lora_B.weight") => (
            format!("{}.weight", n.strip_suffix(".lora_B.weight")?),
            Role::LoraB,
        ),
        n if n.ends_with(".bias") => (format!("{}.weight", n.strip_suffix(".bias")?), Role::Bias),
        n if n.ends_with(".weight") => (n.to_string(), Role::Weight),
        _ => return None,
    };
    Some((key, role, unit))
}

impl Catalog {
    pub(super) fn new(model: &SequenceClassifier, set: &ParamSet) -> Result<Self> {
        let all = model.encoder.parameters();
        let by_name: HashMap<&str, &Tensor> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let c = model.head.num_labels();
        let mut params = Vec::new();
        let mut sites: HashMap<TensorId, SiteInfo> = HashMap::new();
        let mut parameters = 0;
        let mut units = 0;
        for (name, t) in &all {
            if !set.includes(name) {
                continue;
            }
            let unsupported = || Error::InvalidArgument {
                field: "params".into(),
                reason: format!("the layer-wise eNTK does not know the parameter `{name}`"),
            };
            let (key_name, role, unit) = classify(name).ok_or_else(unsupported)?;
            let group = ParamGroup::of(name).ok_or_else(unsupported)?;
            let key = by_name.get(key_name.as_str()).ok_or_else(unsupported)?;
            let key_dims = key.dims().to_vec();
            let h = *key_dims.last().unwrap_or(&0);
            // Bytes stored per token: X and G (f32) for dense layers, plus X Aᵀ and G B for
            // LoRA; the aggregated f64 rows of each embedding table.
            let bytes = match role {
                Role::Word | Role::Position | Role::TokenType => 8 * c * h,
                Role::Gamma | Role::Beta | Role::RelativeBias => 0,
                Role::Weight | Role::Bias | Role::LoraA | Role::LoraB => {
                    let (d_out, d_in) = (key_dims[0], key_dims[1]);
                    let r = if matches!(role, Role::LoraA | Role::LoraB) {
                        t.dims()[0].min(t.dims()[1])
                    } else {
                        0
                    };
                    4 * (d_in + c * d_out + r * (1 + c))
                }
            };
            let site = sites.entry(key.id()).or_insert_with(|| SiteInfo {
                key_name: key_name.clone(),
                params: Vec::new(),
                unit,
                bytes_per_token: 0,
            });
            // X and G are shared by the blocks of one dense layer: count them once.
            site.bytes_per_token = site.bytes_per_token.max(bytes);
            site.params.push(params.len());
            params.push(ParamInfo { group, role });
            parameters += t.elem_count();
            units = units.max(unit + 1);
        }
        if params.is_empty() {
            return Err(Error::InvalidArgument {
                field: "params".into(),
                reason: format!("{set:?} selects no encoder parameter"),
            });
        }
        Ok(Self {
            params,
            sites,
            units,
            parameters,
        })
    }

    /// Groups of units, one per pass, each within `budget` bytes for `tokens` total tokens.
    pub(super) fn passes(&self, tokens: usize, budget: usize) -> Vec<HashSet<TensorId>> {
        let mut per_unit = vec![0usize; self.units];
        for s in self.sites.values() {
            per_unit[s.unit] += s.bytes_per_token * tokens;
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut used = 0usize;
        for (u, &bytes) in per_unit.iter().enumerate() {
            if bytes == 0 && !self.sites.values().any(|s| s.unit == u) {
                continue;
            }
            match groups.last_mut() {
                Some(g) if used + bytes <= budget => {
                    g.push(u);
                    used += bytes;
                }
                _ => {
                    groups.push(vec![u]);
                    used = bytes;
                }
            }
        }
        groups
            .into_iter()
            .map(|units| {
                self.sites
                    .iter()
                    .filter(|(_, s)| units.contains(&s.unit))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .collect()
    }
}
