//! The paper's own numbers, for "ours vs paper" columns in reports.
//!
//! Tomihari & Sato, "Understanding Linear Probing then Fine-tuning Language Models from NTK
//! Perspective" (NeurIPS 2024; arXiv 2405.16747v2), transcribed from the paper's tables
//! (docs/method.md says which holds what): Table 1 and 11
//! (feature statistics, docs/method.md §6.1–6.2), Table 12 (feature change in the FT stage, §6.3), Table 13
//! (classifier norms, §6.4), Table 2 and 9 (kernel statistics, §7.4), Table 3/14/15 (calibration,
//! §9), Table 8, 10 and 16 (accuracy, §10). Values are kept exactly as the paper prints them
//! (`8.14e4` stays `8.14e4`, percentages stay percentages); nothing here is recomputed.
//!
//! Lookups take a dataset and a method name and return `None` for anything the paper does not
//! print. Names are case-insensitive, surrounding whitespace is ignored and `_` equals `-`.
//!
//! Methods (`METHODS`): `pretrained` (the pre-trained backbone with its randomly initialised
//! head; aliases `pre-trained`, `pretrain`, `init`), `lp`, `ft`, `lp-ft` (alias `lpft`), `lora`,
//! `lp-lora` (alias `lplora`).
//!
//! Datasets (`DATASETS`): `cb`, `rte`, `boolq`, `wic`, `wsc`, `cola`, `sst2`, `mrpc`, `amazon`,
//! `dynasent`, `semeval`, `sst5`, `pubmed`. Aliases: `sst-2`, `sst-5`, `pubmed-20k`,
//! `pubmed-20k-rct`, `pubmed-rct`, and the lpft task names `glue-rte` (→ `rte`) and `sst5-3`
//! (→ `sst5`).
//!
//! Caveats on the lpft aliases: the paper's RTE is the SuperGLUE copy, lpft's `glue-rte` reads
//! the GLUE copy of the same data. The paper's SST-5 numbers are the BOSS SST-5 test set (3
//! classes) evaluated with models **trained on Amazon**; lpft's `sst5-3` (SST-5 collapsed to 3
//! classes, trained on itself) and `sst5` (5 classes) are different experiments, so the paper's
//! SST-5 values are a reference point for them, not a like-for-like target.

use self::CalibrationMetric::{Ece, Mce};

/// A paper value: mean, and the ± std where the paper prints one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// The mean over seeds, in the unit of the table it comes from.
    pub mean: f64,
    /// The standard deviation over seeds, where the paper prints "± std".
    pub std: Option<f64>,
}

/// Feature and classifier statistics of one model (Table 1, Table 11).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureStats {
    /// CS(F): mean pairwise cosine similarity among the model's features (unitless, ≤ 1).
    pub cs: f64,
    /// Diff(F): feature change from the pre-trained model; `None` where the paper prints "–"
    /// (the pre-trained and LP rows, whose backbone is the pre-trained one).
    pub diff: Option<f64>,
    /// FDR(F): Fisher's discriminant ratio of the features (unitless).
    pub fdr: f64,
    /// Norm(C): ‖V‖_F of the classifier head; Table 11 prints it for Amazon only.
    pub norm: Option<f64>,
}

/// Which kernel of the NTK decomposition a [`kernel_stats`] row describes (Table 2, Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KernelKind {
    /// "Pre-train E" = P, the kernel of the head's own parameters; one row per dataset,
    /// shared by all methods.
    Pretrain,
    /// "FT E" = F, the kernel of the parameters trained in the FT stage.
    Ft,
    /// "NTK" = P + F.
    Ntk,
}

/// One row of Table 2 / Table 9: statistics of a train×train kernel matrix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelStats {
    /// Numerical rank of the matrix.
    pub rank: usize,
    /// Frobenius norm, absolute (the paper's `51.0e3` is `51000.0` here).
    pub frobenius_norm: f64,
    /// Kernel-regression training accuracy, %.
    pub acc_train: f64,
    /// Kernel-regression test accuracy, %.
    pub acc_test: f64,
    /// FT Ratio of the method (the same value on its F and NTK rows); `None` for Pre-train E.
    pub ft_ratio: Option<f64>,
}

/// The calibration metric of a [`calibration`] row (Table 3/14/15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibrationMetric {
    /// Expected calibration error, 15 bins.
    Ece,
    /// Maximum calibration error, 15 bins.
    Mce,
}

/// One row of Table 3/14/15: a calibration error without and with temperature scaling, in %.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Error without temperature scaling, % (mean ± std over 5 seeds).
    pub without_ts: MeanStd,
    /// Error with temperature scaling, % (mean ± std over 5 seeds).
    pub with_ts: MeanStd,
    /// "Imp." as printed, in percentage points (positive = TS helped). It is the paper's own
    /// number and can differ from `without_ts.mean - with_ts.mean` in the last digit.
    pub improvement: f64,
}

#[cfg(test)]
/// Canonical method names used by the lookups, in the order the module docs list them.
pub(crate) const METHODS: [&str; 6] = ["pretrained", "lp", "ft", "lp-ft", "lora", "lp-lora"];

#[cfg(test)]
/// Canonical dataset names used by the lookups.
pub(crate) const DATASETS: [&str; 13] = [
    "cb", "rte", "boolq", "wic", "wsc", "cola", "sst2", "mrpc", "amazon", "dynasent", "semeval",
    "sst5", "pubmed",
];

/// The canonical dataset name for `name` (case-insensitive, `_` = `-`, aliases such as
/// `glue-rte` → `rte` and `sst5-3` → `sst5` resolved), or `None` if the paper has no such set.
pub(crate) fn canonical_dataset(name: &str) -> Option<&'static str> {
    let canonical = match normalize(name).as_str() {
        "cb" => "cb",
        "rte" | "glue-rte" => "rte",
        "boolq" => "boolq",
        "wic" => "wic",
        "wsc" => "wsc",
        "cola" => "cola",
        "sst2" | "sst-2" => "sst2",
        "mrpc" => "mrpc",
        "amazon" => "amazon",
        "dynasent" => "dynasent",
        "semeval" => "semeval",
        "sst5" | "sst-5" | "sst5-3" => "sst5",
        "pubmed" | "pubmed-20k" | "pubmed-20k-rct" | "pubmed-rct" => "pubmed",
        _ => return None,
    };
    Some(canonical)
}

/// The canonical method name for `name` (case-insensitive, `_` = `-`, aliases such as
/// `pre-trained` → `pretrained` resolved), or `None` if the paper has no such method row.
pub(crate) fn canonical_method(name: &str) -> Option<&'static str> {
    let canonical = match normalize(name).as_str() {
        "pretrained" | "pre-trained" | "pretrain" | "init" => "pretrained",
        "lp" => "lp",
        "ft" => "ft",
        "lp-ft" | "lpft" => "lp-ft",
        "lora" => "lora",
        "lp-lora" | "lplora" => "lp-lora",
        _ => return None,
    };
    Some(canonical)
}

/// ID test accuracy of `method` on `dataset`, in % as the paper prints it (mean ± std over 5
/// seeds). GLUE/SuperGLUE come from Table 8, where CoLA is the Matthews correlation × 100, not
/// an accuracy; `pubmed` comes from Table 16; `amazon` (trained and evaluated on Amazon) comes
/// from Table 10's ID column. Methods: `lp`, `ft`, `lp-ft`, `lora`, `lp-lora` (there is no
/// `pretrained` row). The OOD sets `dynasent`, `semeval`, `sst5` give `None`: use
/// [`accuracy_boss`].
pub fn accuracy(dataset: &str, method: &str) -> Option<MeanStd> {
    let dataset = canonical_dataset(dataset)?;
    let method = canonical_method(method)?;
    match dataset {
        "pubmed" => cell(&[("pubmed", TABLE16)], &ACCURACY_METHODS, "pubmed", method),
        "amazon" => cell(&TABLE10, &BOSS_EVAL_SETS, method, "amazon"),
        _ => cell(&TABLE8, &ACCURACY_METHODS, dataset, method),
    }
}

/// Table 10: accuracy in % (mean ± std over 5 seeds) of `method` trained on Amazon and
/// evaluated on `eval_set`: `amazon` (ID), `dynasent`, `semeval`, `sst5` (OOD; `sst5-3` is
/// accepted as an alias, see the module docs). Methods: `lp`, `ft`, `lp-ft`, `lora`, `lp-lora`.
pub fn accuracy_boss(eval_set: &str, method: &str) -> Option<MeanStd> {
    let eval_set = canonical_dataset(eval_set)?;
    let method = canonical_method(method)?;
    cell(&TABLE10, &BOSS_EVAL_SETS, method, eval_set)
}

/// Feature statistics CS(F), Diff(F), FDR(F) and the classifier norm Norm(C) of `method` on
/// `dataset` (all unitless; see [`FeatureStats`]). Table 1 for `cb` and `rte`; Table 11 for
/// `amazon`, `dynasent`, `semeval`, `sst5`, where every model is the Amazon-trained one and
/// Norm(C) is printed for Amazon only. Methods: `pretrained`, `lp`, `ft`, `lora`, `lp-ft`,
/// `lp-lora`. Table 1's Norm(C) for CB/RTE differs from Table 13's (see [`classifier_norm`]);
/// both are kept as printed.
pub(crate) fn feature_stats(dataset: &str, method: &str) -> Option<FeatureStats> {
    let dataset = canonical_dataset(dataset)?;
    let method = canonical_method(method)?;
    match dataset {
        "cb" | "rte" => cell(&TABLE1, &TABLE1_DATASETS, method, dataset),
        _ => cell(&TABLE11, &BOSS_EVAL_SETS, method, dataset),
    }
}

#[cfg(test)]
/// Table 12: Diff(F), the feature change during the FT stage (unitless norm), of `method` on
/// `dataset`. Methods: `ft`, `lora`, `lp-ft`, `lp-lora`. Datasets: `cb`, `rte`, `cola`, `sst2`,
/// `mrpc`, `boolq`, `wic`, `wsc`, and `amazon`, `dynasent`, `semeval`, `sst5` (all four with the
/// Amazon-trained models). The values differ slightly from Table 1/11's Diff(F) (e.g. CB FT
/// 21.1 here, 22.1 in Table 1); both are kept as printed.
pub(crate) fn feature_change_ft_stage(dataset: &str, method: &str) -> Option<f64> {
    let dataset = canonical_dataset(dataset)?;
    let method = canonical_method(method)?;
    cell(&TABLE12, &FT_STAGE_METHODS, dataset, method)
}

/// Table 13: the classifier weight norm ‖V‖_F (Frobenius, bias excluded; unitless) after
/// training `method` on `dataset`. `pretrained` is the randomly initialised head; the other
/// methods are `ft`, `lora`, `lp`, `lp-ft`, `lp-lora`. Datasets: `cb`, `rte`, `cola`, `sst2`,
/// `mrpc`, `boolq`, `wic`, `wsc`, `amazon`.
pub fn classifier_norm(dataset: &str, method: &str) -> Option<f64> {
    let dataset = canonical_dataset(dataset)?;
    let method = canonical_method(method)?;
    cell(&TABLE13, &NORM_METHODS, dataset, method)
}

/// Table 2 (`cb`) and Table 9 (`rte`, `boolq`, `wic`): rank, Frobenius norm (absolute),
/// kernel-regression train/test accuracy (%) and FT Ratio of a train×train kernel matrix.
///
/// `method` is `None` for the Pre-train E row ([`KernelKind::Pretrain`], shared by all
/// methods; `Some` of a listed method with `Pretrain` returns that shared row too). With
/// [`KernelKind::Ft`] or [`KernelKind::Ntk`], `method` is `Some` of `ft`, `lora`, `lp-ft` or
/// `lp-lora`; `None` then gives `None`. `ft_ratio` is the method's single FT Ratio, repeated on
/// its F and NTK rows.
pub(crate) fn kernel_stats(
    dataset: &str,
    method: Option<&str>,
    kind: KernelKind,
) -> Option<KernelStats> {
    let dataset = canonical_dataset(dataset)?;
    let method = match method {
        Some(name) => Some(canonical_method(name).filter(|m| FT_STAGE_METHODS.contains(m))?),
        None => None,
    };
    match (kind, method) {
        (KernelKind::Pretrain, _) => KERNEL_PRETRAIN
            .iter()
            .find(|(d, _)| *d == dataset)
            .map(|(_, stats)| *stats),
        (KernelKind::Ft, Some(method)) => kernel_method_row(dataset, method).map(|[f, _]| f),
        (KernelKind::Ntk, Some(method)) => kernel_method_row(dataset, method).map(|[_, ntk]| ntk),
        (_, None) => None,
    }
}

/// Tables 3/14/15: ECE or MCE (15 bins, in %) of `method` on `dataset` without and with
/// temperature scaling, and the printed improvement (percentage points). Methods: `ft`,
/// `lp-ft`, `lora`, `lp-lora`. Datasets: `cb`, `rte`, `boolq`, `wic`, `wsc`, `cola`, `sst2`,
/// `mrpc`.
pub fn calibration(dataset: &str, method: &str, metric: CalibrationMetric) -> Option<Calibration> {
    let dataset = canonical_dataset(dataset)?;
    let method = canonical_method(method)?;
    CALIBRATION
        .iter()
        .find(|(d, m, name, _)| *d == dataset && *m == metric && *name == method)
        .map(|(_, _, _, row)| *row)
}

#[cfg(test)]
/// Which paper table a lookup comes from, for captions: `kind` is the lookup function's name
/// (`accuracy`, `accuracy_boss`, `feature_stats`, `feature_change_ft_stage`, `classifier_norm`,
/// `kernel_stats`, `calibration`; `_` = `-`), and the answer is `None` when that table has no
/// rows for `dataset`. E.g. `table_for("accuracy", "cb")` is `Some("Table 8")`.
///
/// Calibration: RTE is the main text's Table 3; the other SuperGLUE sets (CB, BoolQ, WiC, WSC)
/// are given as Table 14 and the GLUE sets (CoLA, SST-2, MRPC) as Table 15 (the split follows
/// the paper's remark that Table 15 holds SST-2 and MRPC).
pub(crate) fn table_for(kind: &str, dataset: &str) -> Option<&'static str> {
    let dataset = canonical_dataset(dataset)?;
    let table = match (normalize(kind).as_str(), dataset) {
        ("accuracy", "pubmed") => "Table 16",
        ("accuracy", "amazon") => "Table 10",
        ("accuracy", d) if TABLE8.iter().any(|(row, _)| *row == d) => "Table 8",
        ("accuracy-boss", d) if BOSS_EVAL_SETS.contains(&d) => "Table 10",
        ("feature-stats", "cb" | "rte") => "Table 1",
        ("feature-stats", d) if BOSS_EVAL_SETS.contains(&d) => "Table 11",
        ("feature-change-ft-stage", d) if TABLE12.iter().any(|(row, _)| *row == d) => "Table 12",
        ("classifier-norm", d) if TABLE13.iter().any(|(row, _)| *row == d) => "Table 13",
        ("kernel-stats", "cb") => "Table 2",
        ("kernel-stats", "rte" | "boolq" | "wic") => "Table 9",
        ("calibration", "rte") => "Table 3",
        ("calibration", "cb" | "boolq" | "wic" | "wsc") => "Table 14",
        ("calibration", "cola" | "sst2" | "mrpc") => "Table 15",
        _ => return None,
    };
    Some(table)
}

fn normalize(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// The value in row `row`, column `column` of a table stored as rows of equal length.
fn cell<T: Copy, const N: usize>(
    rows: &[(&str, [T; N])],
    columns: &[&str; N],
    row: &str,
    column: &str,
) -> Option<T> {
    let (_, values) = rows.iter().find(|(name, _)| *name == row)?;
    let index = columns.iter().position(|name| *name == column)?;
    values.get(index).copied()
}

fn kernel_method_row(dataset: &str, method: &str) -> Option<[KernelStats; 2]> {
    KERNEL_METHODS
        .iter()
        .find(|(d, m, _)| *d == dataset && *m == method)
        .map(|(_, _, rows)| *rows)
}

const fn pm(mean: f64, std: f64) -> MeanStd {
    MeanStd {
        mean,
        std: Some(std),
    }
}

const fn fs(cs: f64, diff: Option<f64>, fdr: f64, norm: Option<f64>) -> FeatureStats {
    FeatureStats {
        cs,
        diff,
        fdr,
        norm,
    }
}

/// A Pre-train E row: (rank, FN, acc train, acc test).
const fn pretrain(rank: usize, frobenius_norm: f64, acc_train: f64, acc_test: f64) -> KernelStats {
    KernelStats {
        rank,
        frobenius_norm,
        acc_train,
        acc_test,
        ft_ratio: None,
    }
}

/// A method's "FT E / NTK" row pair, each (rank, FN, acc train, acc test), and its FT Ratio.
const fn fe_ntk(
    f: (usize, f64, f64, f64),
    ntk: (usize, f64, f64, f64),
    ft_ratio: f64,
) -> [KernelStats; 2] {
    [
        KernelStats {
            rank: f.0,
            frobenius_norm: f.1,
            acc_train: f.2,
            acc_test: f.3,
            ft_ratio: Some(ft_ratio),
        },
        KernelStats {
            rank: ntk.0,
            frobenius_norm: ntk.1,
            acc_train: ntk.2,
            acc_test: ntk.3,
            ft_ratio: Some(ft_ratio),
        },
    ]
}

/// w/o TS mean ± std, w/ TS mean ± std, Imp.
const fn cal(without: f64, without_std: f64, with: f64, with_std: f64, imp: f64) -> Calibration {
    Calibration {
        without_ts: pm(without, without_std),
        with_ts: pm(with, with_std),
        improvement: imp,
    }
}

/// Column order of Table 8 and Table 16.
const ACCURACY_METHODS: [&str; 5] = ["lp", "ft", "lp-ft", "lora", "lp-lora"];

/// Table 8 (docs/method.md §10): test accuracy %, CoLA = MCC × 100; columns [`ACCURACY_METHODS`].
#[rustfmt::skip]
const TABLE8: [(&str, [MeanStd; 5]); 8] = [
    //        LP               FT               LP-FT            LoRA             LP-LoRA
    ("cb",    [pm(77.86, 4.24), pm(81.43, 3.91), pm(84.64, 2.40), pm(77.50, 5.30), pm(75.71, 2.04)]),
    ("rte",   [pm(57.69, 1.10), pm(74.73, 3.04), pm(76.75, 0.87), pm(72.85, 1.41), pm(74.08, 2.57)]),
    ("sst2",  [pm(86.31, 0.10), pm(92.41, 0.32), pm(94.52, 0.26), pm(50.92, 0.00), pm(94.22, 0.45)]),
    ("wic",   [pm(61.32, 0.28), pm(65.89, 1.15), pm(66.14, 1.83), pm(62.70, 7.37), pm(64.29, 1.82)]),
    ("cola",  [pm(46.27, 0.33), pm(58.75, 1.70), pm(57.95, 1.95), pm(57.29, 2.98), pm(58.21, 1.55)]),
    ("mrpc",  [pm(73.09, 0.86), pm(88.14, 0.73), pm(87.60, 0.79), pm(68.38, 0.00), pm(87.79, 1.00)]),
    ("wsc",   [pm(63.46, 0.00), pm(63.46, 0.00), pm(63.46, 0.00), pm(63.46, 0.68), pm(63.46, 0.00)]),
    ("boolq", [pm(64.66, 0.08), pm(78.69, 0.27), pm(79.00, 0.42), pm(77.59, 0.39), pm(77.67, 0.50)]),
];

/// Table 16 (docs/method.md §10): PubMed 20k RCT test accuracy %; columns [`ACCURACY_METHODS`].
#[rustfmt::skip]
const TABLE16: [MeanStd; 5] =
    [pm(82.64, 0.02), pm(87.09, 0.17), pm(87.05, 0.11), pm(87.13, 0.09), pm(86.85, 0.07)];

/// Column order of Table 10 and Table 11.
const BOSS_EVAL_SETS: [&str; 4] = ["amazon", "dynasent", "semeval", "sst5"];

/// Table 10 (docs/method.md §10): accuracy % of Amazon-trained models; columns [`BOSS_EVAL_SETS`].
#[rustfmt::skip]
const TABLE10: [(&str, [MeanStd; 4]); 5] = [
    //          Amazon (ID)      DynaSent (OOD)   SemEval (OOD)    SST-5 (OOD)
    ("lp",      [pm(83.04, 0.01), pm(42.69, 0.05), pm(50.04, 0.01), pm(56.81, 0.11)]),
    ("ft",      [pm(88.66, 1.62), pm(44.33, 1.11), pm(52.20, 1.82), pm(72.52, 1.28)]),
    ("lora",    [pm(86.05, 2.16), pm(46.70, 1.68), pm(55.29, 2.93), pm(72.88, 1.84)]),
    ("lp-ft",   [pm(88.89, 1.02), pm(45.41, 0.80), pm(51.96, 2.72), pm(73.78, 1.05)]),
    ("lp-lora", [pm(88.17, 1.97), pm(43.37, 1.50), pm(48.84, 3.20), pm(72.31, 1.30)]),
];

/// Column order of Table 1.
const TABLE1_DATASETS: [&str; 2] = ["cb", "rte"];

/// Table 1 (docs/method.md §6.1): each cell is `fs(CS(F), Diff(F), FDR(F), Norm(C))`; columns
/// [`TABLE1_DATASETS`].
#[rustfmt::skip]
const TABLE1: [(&str, [FeatureStats; 2]); 6] = [
    //             CB                                               RTE
    ("pretrained", [fs(0.997, None,         8.14e4, Some(9.51e-1)), fs(0.996, None,         8.59e1, Some(7.76e-1))]),
    ("lp",         [fs(0.997, None,         8.14e4, Some(2.48e1)),  fs(0.996, None,         8.59e1, Some(3.10e1))]),
    ("ft",         [fs(0.336, Some(2.21e1), 7.39e8, Some(9.60e-1)), fs(0.260, Some(2.16e1), 1.42e4, Some(7.84e-1))]),
    ("lora",       [fs(0.499, Some(1.92e1), 8.91e6, Some(1.43e0)),  fs(0.759, Some(1.06e1), 2.97e3, Some(1.21e0))]),
    ("lp-ft",      [fs(0.804, Some(1.20e1), 6.47e6, Some(2.48e1)),  fs(0.942, Some(4.70e0), 1.57e2, Some(3.10e1))]),
    ("lp-lora",    [fs(0.837, Some(9.08e0), 2.10e6, Some(2.49e1)),  fs(0.924, Some(4.63e0), 2.06e1, Some(3.10e1))]),
];

/// Table 11 (docs/method.md §6.2): Amazon-trained models, each cell `fs(CS, Diff, FDR, Norm(C))`; columns
/// [`BOSS_EVAL_SETS`].
#[rustfmt::skip]
const TABLE11: [(&str, [FeatureStats; 4]); 6] = [
    //             Amazon                                     DynaSent                            SemEval                             SST-5
    ("pretrained", [fs(0.996, None,       1.30, Some(9.51e-1)), fs(0.996, None,       1.94, None), fs(0.996, None,       1.24, None), fs(0.998, None,       16.9, None)]),
    ("lp",         [fs(0.996, None,       1.30, Some(1.20e2)),  fs(0.996, None,       1.94, None), fs(0.996, None,       1.24, None), fs(0.998, None,       16.9, None)]),
    ("ft",         [fs(0.691, Some(19.4), 3.74, Some(9.50e-1)), fs(0.652, Some(18.0), 2.03, None), fs(0.727, Some(16.8), 1.49, None), fs(0.604, Some(18.4), 22.6, None)]),
    ("lora",       [fs(0.848, Some(11.6), 3.38, Some(1.81)),    fs(0.855, Some(7.53), 2.06, None), fs(0.885, Some(6.74), 1.44, None), fs(0.837, Some(8.72), 20.1, None)]),
    ("lp-ft",      [fs(0.999, Some(2.27), 3.00, Some(1.20e2)),  fs(0.998, Some(2.54), 2.20, None), fs(0.997, Some(2.06), 1.45, None), fs(0.998, Some(1.86), 20.2, None)]),
    ("lp-lora",    [fs(0.999, Some(2.24), 3.01, Some(1.18e2)),  fs(0.999, Some(2.56), 2.04, None), fs(0.999, Some(2.08), 1.19, None), fs(0.998, Some(1.85), 19.5, None)]),
];

/// Column order of Table 12; also the methods with an FT stage (kernel and calibration rows).
const FT_STAGE_METHODS: [&str; 4] = ["ft", "lora", "lp-ft", "lp-lora"];

#[cfg(test)]
/// Table 12 (docs/method.md §6.3): Diff(F) during the FT stage; columns [`FT_STAGE_METHODS`].
#[rustfmt::skip]
const TABLE12: [(&str, [f64; 4]); 12] = [
    //           FT    LoRA   LP-FT LP-LoRA
    ("cb",       [21.1, 20.7,  11.5, 7.85]),
    ("rte",      [21.2, 15.1,  3.33, 3.87]),
    ("cola",     [19.1, 11.0,  3.05, 2.75]),
    ("sst2",     [23.1, 3.78,  6.95, 2.17]),
    ("mrpc",     [21.1, 1.80,  1.84, 1.94]),
    ("boolq",    [22.3, 15.5,  2.31, 1.95]),
    ("wic",      [20.8, 10.4,  2.28, 2.16]),
    ("wsc",      [9.14, 0.244, 7.33, 0.202]),
    ("amazon",   [19.8, 13.5,  2.21, 2.28]),
    ("dynasent", [19.4, 8.02,  2.47, 2.59]),
    ("semeval",  [18.3, 6.97,  1.99, 2.14]),
    ("sst5",     [20.3, 9.08,  1.79, 1.89]),
];

/// Column order of Table 13.
const NORM_METHODS: [&str; 6] = ["pretrained", "ft", "lora", "lp", "lp-ft", "lp-lora"];

/// Table 13 (docs/method.md §6.4): ‖V‖_F after training; columns [`NORM_METHODS`].
#[rustfmt::skip]
const TABLE13: [(&str, [f64; 6]); 9] = [
    //         Pretrain FT     LoRA   LP       LP-FT  LP-LoRA
    ("cb",     [0.947,  0.951, 1.56,  33.5,    33.5,  33.5]),
    ("rte",    [0.795,  0.805, 1.45,  28.6,    28.6,  28.5]),
    ("cola",   [0.795,  0.788, 1.06,  34.6,    34.6,  35.1]),
    ("sst2",   [0.795,  0.720, 1.96,  132.0,   109.0, 103.0]),
    ("mrpc",   [0.795,  0.798, 1.35,  11.2,    11.2,  11.2]),
    ("boolq",  [0.795,  0.798, 1.15,  12.7,    12.7,  12.5]),
    ("wic",    [0.795,  0.798, 1.14,  32.1,    32.5,  32.7]),
    ("wsc",    [0.795,  0.687, 0.788, 2.26e-4, 0.108, 0.0216]),
    ("amazon", [0.951,  0.947, 1.67,  121.0,   121.0, 120.0]),
];

/// Table 2 / Table 9 (docs/method.md §7.4): the Pre-train E rows, `pretrain(rank, FN, acc train, acc test)`.
#[rustfmt::skip]
const KERNEL_PRETRAIN: [(&str, KernelStats); 4] = [
    ("cb",    pretrain(18, 51.0e3, 87.11, 79.17)),
    ("rte",   pretrain(28, 4.70e4, 66.40, 51.20)),
    ("boolq", pretrain(32, 4.48e4, 53.60, 57.20)),
    ("wic",   pretrain(16, 4.81e4, 66.00, 54.00)),
];

/// Table 2 / Table 9 (docs/method.md §7.4): each method's [FT E, NTK] rows,
/// `fe_ntk((rank, FN, acc train, acc test) of F, (…) of NTK, FT Ratio)`.
#[rustfmt::skip]
const KERNEL_METHODS: [(&str, &str, [KernelStats; 2]); 16] = [
    ("cb",    "ft",      fe_ntk((608, 13.9e3,   84.74,  79.76), (210, 64.9e3, 84.74,  79.76), 0.1987)),
    ("cb",    "lora",    fe_ntk((500, 0.0226e3, 86.22,  79.17), (20,  51.0e3, 92.15,  84.52), 0.0004)),
    ("cb",    "lp-ft",   fe_ntk((344, 7250e3,   100.00, 86.31), (344, 7280e3, 100.00, 86.31), 1.0000)),
    ("cb",    "lp-lora", fe_ntk((307, 15.1e3,   94.96,  85.71), (188, 62.6e3, 95.11,  85.71), 1.0137)),
    ("rte",   "ft",      fe_ntk((488, 1.29e4,   96.60,  53.40), (191, 5.98e4, 97.60,  53.00), 0.2148)),
    ("rte",   "lora",    fe_ntk((432, 2.51e1,   70.80,  54.60), (30,  4.70e4, 59.60,  54.80), 0.0005)),
    ("rte",   "lp-ft",   fe_ntk((250, 3.80e6,   100.00, 51.20), (251, 3.84e6, 100.00, 51.20), 0.9918)),
    ("rte",   "lp-lora", fe_ntk((243, 7.60e3,   84.80,  51.20), (103, 5.26e4, 88.00,  51.20), 0.1942)),
    ("boolq", "ft",      fe_ntk((495, 1.24e4,   100.00, 56.40), (215, 5.67e4, 53.80,  57.20), 0.2139)),
    ("boolq", "lora",    fe_ntk((448, 2.48e1,   53.60,  57.20), (34,  4.48e4, 53.60,  57.20), 0.0005)),
    ("boolq", "lp-ft",   fe_ntk((247, 4.46e6,   100.00, 61.60), (248, 4.49e6, 100.00, 61.20), 0.9921)),
    ("boolq", "lp-lora", fe_ntk((237, 8.56e3,   68.80,  63.60), (99,  5.07e4, 86.00,  59.20), 0.2118)),
    ("wic",   "ft",      fe_ntk((488, 1.45e4,   89.00,  59.00), (235, 6.17e4, 90.60,  59.00), 0.2216)),
    ("wic",   "lora",    fe_ntk((438, 2.58e1,   72.00,  52.00), (19,  4.81e4, 65.80,  56.40), 0.0005)),
    ("wic",   "lp-ft",   fe_ntk((218, 7.77e7,   100.00, 56.80), (219, 7.77e7, 100.00, 56.40), 0.9996)),
    ("wic",   "lp-lora", fe_ntk((218, 1.09e5,   72.00,  59.60), (195, 1.47e5, 80.80,  59.60), 0.7454)),
];

/// Table 3 / 14 / 15 (docs/method.md §9): (dataset, metric, method, w/o TS, w/ TS, Imp.), %.
const CALIBRATION: [(&str, CalibrationMetric, &str, Calibration); 64] = [
    ("cb", Ece, "ft", cal(15.60, 0.96, 14.64, 1.75, 0.95)),
    ("cb", Ece, "lp-ft", cal(13.93, 0.45, 13.13, 0.56, 0.80)),
    ("cb", Ece, "lora", cal(12.89, 0.41, 16.22, 0.55, -3.34)),
    ("cb", Ece, "lp-lora", cal(14.78, 0.93, 13.51, 1.67, 1.27)),
    ("cb", Mce, "ft", cal(75.99, 6.12, 69.99, 5.83, 6.01)),
    ("cb", Mce, "lp-ft", cal(76.78, 3.66, 70.28, 3.27, 6.50)),
    ("cb", Mce, "lora", cal(52.58, 4.72, 66.75, 7.96, -14.16)),
    ("cb", Mce, "lp-lora", cal(68.16, 4.95, 60.80, 2.30, 7.36)),
    ("rte", Ece, "ft", cal(21.16, 1.36, 5.13, 0.63, 16.03)),
    ("rte", Ece, "lp-ft", cal(21.72, 0.28, 5.48, 0.77, 16.24)),
    ("rte", Ece, "lora", cal(11.92, 2.23, 6.17, 0.20, 5.76)),
    ("rte", Ece, "lp-lora", cal(18.14, 0.99, 5.72, 0.48, 12.42)),
    ("rte", Mce, "ft", cal(53.11, 8.51, 25.87, 6.30, 27.24)),
    ("rte", Mce, "lp-ft", cal(63.95, 7.70, 13.94, 1.80, 50.01)),
    ("rte", Mce, "lora", cal(25.04, 3.33, 13.75, 0.91, 11.29)),
    ("rte", Mce, "lp-lora", cal(40.46, 7.22, 18.82, 2.00, 21.63)),
    ("boolq", Ece, "ft", cal(13.63, 0.61, 1.83, 0.09, 11.81)),
    ("boolq", Ece, "lp-ft", cal(18.93, 0.15, 2.41, 0.42, 16.51)),
    ("boolq", Ece, "lora", cal(8.88, 0.38, 1.45, 0.18, 7.43)),
    ("boolq", Ece, "lp-lora", cal(14.09, 0.92, 2.07, 0.19, 12.02)),
    ("boolq", Mce, "ft", cal(23.26, 1.48, 5.79, 0.90, 17.47)),
    ("boolq", Mce, "lp-ft", cal(40.82, 1.94, 5.21, 0.53, 35.60)),
    ("boolq", Mce, "lora", cal(13.96, 0.72, 3.85, 0.56, 10.11)),
    ("boolq", Mce, "lp-lora", cal(24.60, 2.52, 5.51, 0.72, 19.09)),
    ("wic", Ece, "ft", cal(25.88, 2.39, 8.85, 0.53, 17.03)),
    ("wic", Ece, "lp-ft", cal(29.47, 1.57, 7.68, 0.55, 21.78)),
    ("wic", Ece, "lora", cal(18.66, 4.39, 5.93, 1.42, 12.73)),
    ("wic", Ece, "lp-lora", cal(22.22, 1.98, 8.06, 0.60, 14.15)),
    ("wic", Mce, "ft", cal(41.59, 5.39, 17.01, 2.87, 24.58)),
    ("wic", Mce, "lp-ft", cal(39.20, 2.74, 17.04, 1.50, 22.16)),
    ("wic", Mce, "lora", cal(27.95, 7.38, 11.40, 2.77, 16.54)),
    ("wic", Mce, "lp-lora", cal(30.99, 3.64, 14.45, 1.01, 16.54)),
    ("wsc", Ece, "ft", cal(6.26, 2.37, 7.97, 0.06, -1.71)),
    ("wsc", Ece, "lp-ft", cal(6.38, 1.78, 8.01, 0.06, -1.63)),
    ("wsc", Ece, "lora", cal(10.53, 1.35, 9.19, 0.60, 1.34)),
    ("wsc", Ece, "lp-lora", cal(11.40, 0.23, 8.24, 0.01, 3.15)),
    ("wsc", Mce, "ft", cal(6.26, 2.37, 7.97, 0.06, -1.71)),
    ("wsc", Mce, "lp-ft", cal(6.38, 1.78, 8.01, 0.06, -1.63)),
    ("wsc", Mce, "lora", cal(13.27, 1.12, 11.12, 1.51, 2.15)),
    ("wsc", Mce, "lp-lora", cal(11.40, 0.23, 8.24, 0.01, 3.15)),
    ("cola", Ece, "ft", cal(15.08, 0.55, 4.46, 0.83, 10.61)),
    ("cola", Ece, "lp-ft", cal(15.74, 0.40, 9.53, 1.23, 6.21)),
    ("cola", Ece, "lora", cal(11.25, 1.32, 4.18, 0.40, 7.07)),
    ("cola", Ece, "lp-lora", cal(13.82, 0.48, 4.30, 0.43, 9.52)),
    ("cola", Mce, "ft", cal(47.19, 5.15, 24.35, 3.33, 22.84)),
    ("cola", Mce, "lp-ft", cal(54.59, 2.94, 20.31, 1.37, 34.28)),
    ("cola", Mce, "lora", cal(31.01, 5.83, 15.23, 2.74, 15.78)),
    ("cola", Mce, "lp-lora", cal(38.36, 7.85, 15.36, 1.83, 23.00)),
    ("sst2", Ece, "ft", cal(4.61, 0.31, 2.26, 0.22, 2.35)),
    ("sst2", Ece, "lp-ft", cal(5.67, 0.12, 2.00, 0.21, 3.66)),
    ("sst2", Ece, "lora", cal(4.84, 0.13, 2.71, 0.16, 2.12)),
    ("sst2", Ece, "lp-lora", cal(6.22, 0.10, 2.53, 0.08, 3.69)),
    ("sst2", Mce, "ft", cal(49.22, 4.78, 42.72, 5.24, 6.50)),
    ("sst2", Mce, "lp-ft", cal(74.91, 1.72, 42.77, 5.75, 32.13)),
    ("sst2", Mce, "lora", cal(54.20, 2.84, 36.58, 5.82, 17.63)),
    ("sst2", Mce, "lp-lora", cal(71.12, 3.97, 32.47, 3.74, 38.65)),
    ("mrpc", Ece, "ft", cal(10.71, 0.39, 4.61, 0.24, 6.10)),
    ("mrpc", Ece, "lp-ft", cal(10.35, 0.14, 3.68, 0.10, 6.68)),
    ("mrpc", Ece, "lora", cal(6.58, 0.68, 4.04, 0.87, 2.54)),
    ("mrpc", Ece, "lp-lora", cal(9.03, 0.85, 3.89, 0.40, 5.14)),
    ("mrpc", Mce, "ft", cal(61.84, 7.93, 32.72, 1.69, 29.12)),
    ("mrpc", Mce, "lp-ft", cal(74.43, 2.22, 22.73, 1.33, 51.70)),
    ("mrpc", Mce, "lora", cal(28.80, 5.05, 17.57, 2.00, 11.23)),
    ("mrpc", Mce, "lp-lora", cal(52.20, 6.64, 22.76, 7.60, 29.44)),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(mean: f64, std: f64) -> MeanStd {
        MeanStd {
            mean,
            std: Some(std),
        }
    }

    #[test]
    fn table8_and_table16_spot_values() {
        assert_eq!(accuracy("cb", "lp-ft"), Some(ms(84.64, 2.40)));
        assert_eq!(accuracy("sst2", "lora"), Some(ms(50.92, 0.00)));
        assert_eq!(accuracy("CoLA", "LP"), Some(ms(46.27, 0.33)));
        assert_eq!(accuracy("pubmed", "lp-lora"), Some(ms(86.85, 0.07)));
        assert_eq!(accuracy("pubmed", "ft"), Some(ms(87.09, 0.17)));
        assert_eq!(accuracy("cb", "pretrained"), None);
        assert_eq!(accuracy("dynasent", "ft"), None);
    }

    #[test]
    fn table10_spot_values() {
        assert_eq!(accuracy_boss("sst5", "lp-ft"), Some(ms(73.78, 1.05)));
        assert_eq!(accuracy_boss("dynasent", "lora"), Some(ms(46.70, 1.68)));
        assert_eq!(accuracy_boss("amazon", "lp"), Some(ms(83.04, 0.01)));
        assert_eq!(accuracy("amazon", "lp"), accuracy_boss("amazon", "lp"));
        assert_eq!(accuracy_boss("sst5-3", "ft"), Some(ms(72.52, 1.28)));
        assert_eq!(accuracy_boss("cb", "ft"), None);
    }

    #[test]
    fn table1_and_table11_spot_values() {
        let pre = feature_stats("cb", "pretrained").expect("CB pre-trained row");
        assert_eq!(
            pre,
            FeatureStats {
                cs: 0.997,
                diff: None,
                fdr: 8.14e4,
                norm: Some(9.51e-1)
            }
        );
        assert_eq!(feature_stats("rte", "ft").map(|s| s.fdr), Some(1.42e4));
        assert_eq!(
            feature_stats("glue_rte", "lp-lora").map(|s| s.diff),
            Some(Some(4.63))
        );
        assert_eq!(feature_stats("rte", "lp").map(|s| s.diff), Some(None));
        assert_eq!(
            feature_stats("amazon", "lp").map(|s| s.norm),
            Some(Some(120.0))
        );
        assert_eq!(feature_stats("semeval", "lora").map(|s| s.fdr), Some(1.44));
        assert_eq!(feature_stats("sst5", "ft").map(|s| s.norm), Some(None));
        assert_eq!(feature_stats("sst5", "lp-lora").map(|s| s.cs), Some(0.998));
        assert_eq!(feature_stats("boolq", "ft"), None);
    }

    #[test]
    fn table12_and_table13_spot_values() {
        assert_eq!(feature_change_ft_stage("cb", "ft"), Some(21.1));
        assert_eq!(feature_change_ft_stage("wsc", "lora"), Some(0.244));
        assert_eq!(feature_change_ft_stage("SST-5", "LP_LoRA"), Some(1.89));
        assert_eq!(feature_change_ft_stage("cb", "lp"), None);
        assert_eq!(classifier_norm("cb", "lp"), Some(33.5));
        assert_eq!(classifier_norm("wsc", "lp"), Some(2.26e-4));
        assert_eq!(classifier_norm("sst2", "lp"), Some(132.0));
        assert_eq!(classifier_norm("amazon", "pretrained"), Some(0.951));
        assert_eq!(classifier_norm("dynasent", "ft"), None);
    }

    #[test]
    fn table2_and_table9_spot_values() {
        let f = kernel_stats("cb", Some("lp-ft"), KernelKind::Ft).expect("CB LP-FT F row");
        assert_eq!(f.frobenius_norm, 7250e3);
        assert_eq!(f.frobenius_norm, 7_250_000.0);
        assert_eq!(
            (f.rank, f.acc_train, f.acc_test, f.ft_ratio),
            (344, 100.0, 86.31, Some(1.0))
        );
        let p = kernel_stats("cb", None, KernelKind::Pretrain).expect("CB P row");
        assert_eq!(
            p,
            KernelStats {
                rank: 18,
                frobenius_norm: 51_000.0,
                acc_train: 87.11,
                acc_test: 79.17,
                ft_ratio: None
            }
        );
        assert_eq!(
            kernel_stats("cb", Some("ft"), KernelKind::Pretrain),
            Some(p)
        );
        let lora = kernel_stats("cb", Some("lora"), KernelKind::Ft).expect("CB LoRA F row");
        assert_eq!(lora.frobenius_norm, 22.6);
        let ntk = kernel_stats("wic", Some("lp-lora"), KernelKind::Ntk).expect("WiC LP-LoRA NTK");
        assert_eq!(
            (ntk.rank, ntk.frobenius_norm, ntk.ft_ratio),
            (195, 1.47e5, Some(0.7454))
        );
        let boolq = kernel_stats("boolq", Some("ft"), KernelKind::Ntk).expect("BoolQ FT NTK");
        assert_eq!((boolq.acc_train, boolq.acc_test), (53.80, 57.20));
        assert_eq!(kernel_stats("cb", None, KernelKind::Ft), None);
        assert_eq!(kernel_stats("cb", Some("lp"), KernelKind::Ft), None);
        assert_eq!(kernel_stats("cb", Some("lp"), KernelKind::Pretrain), None);
        assert_eq!(kernel_stats("wsc", None, KernelKind::Pretrain), None);
    }

    #[test]
    fn calibration_spot_values() {
        let rte = calibration("rte", "lp-ft", CalibrationMetric::Ece).expect("RTE LP-FT ECE");
        assert_eq!(rte.improvement, 16.24);
        assert_eq!(rte.without_ts, ms(21.72, 0.28));
        assert_eq!(rte.with_ts, ms(5.48, 0.77));
        let cb = calibration("cb", "lora", CalibrationMetric::Mce).expect("CB LoRA MCE");
        assert_eq!(cb.improvement, -14.16);
        let mrpc = calibration("mrpc", "lp-lora", CalibrationMetric::Mce).expect("MRPC row");
        assert_eq!(mrpc.with_ts, ms(22.76, 7.60));
        assert_eq!(calibration("rte", "lp", CalibrationMetric::Ece), None);
        assert_eq!(calibration("amazon", "ft", CalibrationMetric::Ece), None);
    }

    #[test]
    fn unknown_names_and_aliases() {
        assert_eq!(accuracy("imagenet", "ft"), None);
        assert_eq!(accuracy("cb", "adapter"), None);
        assert_eq!(accuracy("", ""), None);
        assert_eq!(accuracy_boss("amazon", "sgd"), None);
        assert_eq!(feature_stats("mnli", "ft"), None);
        assert_eq!(feature_change_ft_stage("cb", "full"), None);
        assert_eq!(classifier_norm("qnli", "lp"), None);
        assert_eq!(kernel_stats("cb", Some("bitfit"), KernelKind::Ntk), None);
        assert_eq!(calibration("cb", "ft-lp", CalibrationMetric::Mce), None);
        assert_eq!(table_for("accuracy", "imagenet"), None);
        assert_eq!(table_for("loss", "cb"), None);

        assert_eq!(accuracy("GLUE-RTE", "Lp_Ft"), accuracy("rte", "lp-ft"));
        assert_eq!(accuracy(" SST_2 ", "LPFT"), accuracy("sst2", "lp-ft"));
        assert_eq!(
            accuracy_boss("SST5-3", "lp-lora"),
            accuracy_boss("sst5", "lp-lora")
        );
        assert_eq!(classifier_norm("cb", "Pre-trained"), Some(0.947));
        assert_eq!(classifier_norm("cb", "init"), Some(0.947));
        for name in DATASETS {
            assert_eq!(canonical_dataset(name), Some(name));
        }
        for name in METHODS {
            assert_eq!(canonical_method(name), Some(name));
        }
    }

    #[test]
    fn tables_for_captions() {
        assert_eq!(table_for("accuracy", "cb"), Some("Table 8"));
        assert_eq!(table_for("accuracy", "pubmed"), Some("Table 16"));
        assert_eq!(table_for("accuracy", "amazon"), Some("Table 10"));
        assert_eq!(table_for("accuracy", "sst5"), None);
        assert_eq!(table_for("accuracy_boss", "sst5-3"), Some("Table 10"));
        assert_eq!(table_for("feature_stats", "rte"), Some("Table 1"));
        assert_eq!(table_for("feature_stats", "semeval"), Some("Table 11"));
        assert_eq!(
            table_for("feature_change_ft_stage", "wsc"),
            Some("Table 12")
        );
        assert_eq!(table_for("classifier_norm", "amazon"), Some("Table 13"));
        assert_eq!(table_for("classifier_norm", "sst5"), None);
        assert_eq!(table_for("kernel_stats", "cb"), Some("Table 2"));
        assert_eq!(table_for("kernel-stats", "wic"), Some("Table 9"));
        assert_eq!(table_for("calibration", "rte"), Some("Table 3"));
        assert_eq!(table_for("calibration", "boolq"), Some("Table 14"));
        assert_eq!(table_for("calibration", "mrpc"), Some("Table 15"));
    }

    /// Every lookup answers exactly where its table has a row (and `table_for` agrees).
    #[test]
    fn table_for_matches_the_lookups() {
        type HasRows = fn(&str) -> bool;
        let kinds: [(&str, HasRows); 7] = [
            ("accuracy", |d| {
                METHODS.iter().any(|m| accuracy(d, m).is_some())
            }),
            ("accuracy_boss", |d| {
                METHODS.iter().any(|m| accuracy_boss(d, m).is_some())
            }),
            ("feature_stats", |d| {
                METHODS.iter().any(|m| feature_stats(d, m).is_some())
            }),
            ("feature_change_ft_stage", |d| {
                METHODS
                    .iter()
                    .any(|m| feature_change_ft_stage(d, m).is_some())
            }),
            ("classifier_norm", |d| {
                METHODS.iter().any(|m| classifier_norm(d, m).is_some())
            }),
            ("kernel_stats", |d| {
                kernel_stats(d, None, KernelKind::Pretrain).is_some()
            }),
            ("calibration", |d| {
                METHODS
                    .iter()
                    .any(|m| calibration(d, m, CalibrationMetric::Ece).is_some())
            }),
        ];
        for (kind, has_rows) in kinds {
            for dataset in DATASETS {
                assert_eq!(
                    table_for(kind, dataset).is_some(),
                    has_rows(dataset),
                    "{kind} {dataset}"
                );
            }
        }
    }

    // ---- Cross-checks against an independent transcription of the paper's tables
    // ($LPFT_PAPER_SPEC, Markdown). ----

    /// The transcription of the paper's tables these cells are checked against, named by
    /// `$LPFT_PAPER_SPEC` (it is not part of the repository). The checks run only when asked for
    /// (`--ignored`), and then a missing file fails them instead of passing them silently.
    fn spec_text() -> String {
        let path = std::env::var("LPFT_PAPER_SPEC")
            .unwrap_or_else(|_| panic!("LPFT_PAPER_SPEC is not set (see the #[ignore] reason)"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn cells(line: &str) -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    }

    /// The header and body rows of the first markdown table after the line containing `marker`.
    fn md_table(spec: &str, marker: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let mut lines = spec.lines().skip_while(|l| !l.contains(marker)).skip(1);
        let mut lines = lines
            .by_ref()
            .skip_while(|l| !l.trim_start().starts_with('|'));
        let header = cells(
            lines
                .next()
                .unwrap_or_else(|| panic!("no table after {marker:?}")),
        );
        let rows: Vec<Vec<String>> = lines
            .take_while(|l| l.trim_start().starts_with('|'))
            .map(cells)
            .filter(|row| {
                !row.iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == ':'))
            })
            .collect();
        assert!(!rows.is_empty(), "empty table after {marker:?}");
        (header, rows)
    }

    fn num(cell: &str) -> f64 {
        let text = cell.trim().replace('\u{2212}', "-");
        text.parse()
            .unwrap_or_else(|e| panic!("not a number: {cell:?} ({e})"))
    }

    fn opt_num(cell: &str) -> Option<f64> {
        (cell.trim() != "\u{2013}").then(|| num(cell))
    }

    fn mean_std(cell: &str) -> MeanStd {
        match cell.split_once('±') {
            Some((mean, std)) => ms(num(mean), num(std)),
            None => MeanStd {
                mean: num(cell),
                std: None,
            },
        }
    }

    fn first_word(cell: &str) -> &str {
        cell.split_whitespace().next().unwrap_or("")
    }

    fn dataset(cell: &str) -> &'static str {
        canonical_dataset(first_word(cell)).unwrap_or_else(|| panic!("dataset {cell:?}"))
    }

    fn method(cell: &str) -> &'static str {
        canonical_method(first_word(cell)).unwrap_or_else(|| panic!("method {cell:?}"))
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_table8_every_cell() {
        let spec = spec_text();
        let (header, rows) = md_table(&spec, "Table 8 (GLUE/SuperGLUE");
        let mut checked = 0;
        for row in &rows {
            let d = dataset(&row[0]);
            for (col, cell) in header.iter().zip(row).skip(1) {
                assert_eq!(accuracy(d, method(col)), Some(mean_std(cell)), "{d} {col}");
                checked += 1;
            }
        }
        assert_eq!(checked, 40);
        assert_eq!(checked, TABLE8.len() * ACCURACY_METHODS.len());
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_table10_and_table16_every_cell() {
        let spec = spec_text();
        let (header, rows) = md_table(&spec, "Table 10 (BOSS");
        let mut checked = 0;
        for row in &rows {
            let m = method(&row[0]);
            for (col, cell) in header.iter().zip(row).skip(1) {
                assert_eq!(
                    accuracy_boss(dataset(col), m),
                    Some(mean_std(cell)),
                    "{m} {col}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, TABLE10.len() * BOSS_EVAL_SETS.len());

        let line = spec
            .lines()
            .find(|l| l.starts_with("Table 16 (PubMed"))
            .expect("Table 16");
        let (_, values) = line.split_once("):").expect("Table 16 values");
        let mut checked = 0;
        for entry in values.trim().trim_end_matches('.').split(", ") {
            let (name, value) = entry.split_once(' ').expect("method value");
            assert_eq!(
                accuracy("pubmed", method(name)),
                Some(mean_std(value)),
                "{entry}"
            );
            checked += 1;
        }
        assert_eq!(checked, TABLE16.len());
    }

    /// Table 1 and Table 11: columns are "<Dataset> <Stat>" or a bare stat of the last dataset.
    fn check_feature_table(spec: &str, marker: &str) -> usize {
        let (header, rows) = md_table(spec, marker);
        let mut columns = Vec::new();
        let mut current = "";
        for col in header.iter().skip(1) {
            let stat = match col.split_once(' ') {
                Some((d, stat)) => {
                    current = dataset(d);
                    stat
                }
                None => col.as_str(),
            };
            columns.push((current, stat.split('(').next().unwrap_or(stat).to_string()));
        }
        let mut checked = 0;
        for row in &rows {
            let m = method(&row[0]);
            for ((d, stat), cell) in columns.iter().zip(row.iter().skip(1)) {
                let got = feature_stats(d, m).unwrap_or_else(|| panic!("{d} {m}"));
                match stat.as_str() {
                    "CS" => assert_eq!(got.cs, num(cell), "{d} {m} CS"),
                    "Diff" => assert_eq!(got.diff, opt_num(cell), "{d} {m} Diff"),
                    "FDR" => assert_eq!(got.fdr, num(cell), "{d} {m} FDR"),
                    "Norm" => assert_eq!(got.norm, opt_num(cell), "{d} {m} Norm"),
                    other => panic!("unknown column {other:?}"),
                }
                checked += 1;
            }
            for d in ["dynasent", "semeval", "sst5"] {
                if columns.iter().any(|(c, _)| *c == d) {
                    assert_eq!(feature_stats(d, m).and_then(|s| s.norm), None, "{d} {m}");
                }
            }
        }
        checked
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_table1_and_table11_every_cell() {
        let spec = spec_text();
        assert_eq!(check_feature_table(&spec, "### 6.1"), TABLE1.len() * 2 * 4);
        assert_eq!(
            check_feature_table(&spec, "### 6.2"),
            TABLE11.len() * (4 + 3 * 3)
        );
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_table12_and_table13_every_cell() {
        let spec = spec_text();
        type Lookup = fn(&str, &str) -> Option<f64>;
        let lookups: [(&str, Lookup, usize); 2] = [
            (
                "### 6.3",
                feature_change_ft_stage,
                TABLE12.len() * FT_STAGE_METHODS.len(),
            ),
            (
                "### 6.4",
                classifier_norm,
                TABLE13.len() * NORM_METHODS.len(),
            ),
        ];
        for (marker, lookup, expected) in lookups {
            let (header, rows) = md_table(&spec, marker);
            let mut checked = 0;
            for row in &rows {
                let d = dataset(&row[0]);
                for (col, cell) in header.iter().zip(row).skip(1) {
                    assert_eq!(
                        lookup(d, method(col)),
                        Some(num(cell)),
                        "{marker} {d} {col}"
                    );
                    checked += 1;
                }
            }
            assert_eq!(checked, expected, "{marker}");
        }
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_table2_and_table9_every_cell() {
        let spec = spec_text();
        let (_, rows) = md_table(&spec, "### 7.4");
        let pair = |cell: &str, sep: &str| -> Vec<String> {
            cell.split(sep).map(|s| s.trim().to_string()).collect()
        };
        let acc = |cell: &str| -> (f64, f64) {
            let (train, test) = cell.split_once('/').expect("train/test");
            (num(train), num(test))
        };
        let mut checked = 0;
        for row in &rows {
            let d = dataset(&row[0]);
            if row[1] == "\u{2013}" {
                let (acc_train, acc_test) = acc(&row[5]);
                let expected = KernelStats {
                    rank: row[3].parse().expect("rank"),
                    frobenius_norm: num(&row[4]),
                    acc_train,
                    acc_test,
                    ft_ratio: opt_num(&row[6]),
                };
                assert_eq!(
                    kernel_stats(d, None, KernelKind::Pretrain),
                    Some(expected),
                    "{d} P"
                );
                checked += 1;
                continue;
            }
            let m = method(&row[1]);
            let (ranks, norms, accs) = (pair(&row[3], "/"), pair(&row[4], "/"), pair(&row[5], ";"));
            for (i, kind) in [KernelKind::Ft, KernelKind::Ntk].into_iter().enumerate() {
                let (acc_train, acc_test) = acc(&accs[i]);
                let expected = KernelStats {
                    rank: ranks[i].parse().expect("rank"),
                    frobenius_norm: num(&norms[i]),
                    acc_train,
                    acc_test,
                    ft_ratio: Some(num(&row[6])),
                };
                assert_eq!(
                    kernel_stats(d, Some(m), kind),
                    Some(expected),
                    "{d} {m} {kind:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, KERNEL_PRETRAIN.len() + 2 * KERNEL_METHODS.len());
    }

    #[test]
    #[ignore = "needs the paper-table transcription: LPFT_PAPER_SPEC=FILE cargo test -- --ignored spec_"]
    fn spec_calibration_every_cell() {
        let spec = spec_text();
        let (_, rows) = md_table(&spec, "Table 3 / Table 14 / Table 15");
        for row in &rows {
            let metric = match row[1].as_str() {
                "ECE" => CalibrationMetric::Ece,
                "MCE" => CalibrationMetric::Mce,
                other => panic!("metric {other:?}"),
            };
            let (d, m) = (dataset(&row[0]), method(&row[2]));
            let expected = Calibration {
                without_ts: mean_std(&row[3]),
                with_ts: mean_std(&row[4]),
                improvement: num(&row[5]),
            };
            assert_eq!(
                calibration(d, m, metric),
                Some(expected),
                "{d} {m} {metric:?}"
            );
        }
        assert_eq!(rows.len(), CALIBRATION.len());
    }
}
