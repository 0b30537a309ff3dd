//! Named metric profiles (metrics.md §3.7): which definition produced each number. Every [`Summary`]
//! carries a [`Definitions`] object built from its profile, so a number can always be traced to its definition.
//!
//! - `paper`: the seed's exact conventions (seed-system.md §10.5) — 10 bins, torchmetrics membership, softmax
//!   rounded to float32 (the seed computes `softmax` on float32 tensors; given probabilities, float64 ones
//!   included, are rounded to float32 too, as torchmetrics does before binning), sklearn-1.1.3 clipped NLL, Brier ÷ K
//!   as the headline Brier, MSP score, ID-positive interpolated FPR95 (ood_metrics), trapezoidal AUPR;
//!   ECE rendered ×100.
//! - `default`: recommended exact definitions — 15 bins, torchmetrics membership (the exact-1.0 bin never merges
//!   over-confident predictions with the rest), softmax in f64, exact NLL via log-softmax, canonical Brier,
//!   MSP score, exact ID-positive FPR95, average-precision AUPR, tie-safe equal-mass ECE.
//!
//! [`Summary`]: crate::summary::Summary

use serde::{Deserialize, Serialize};

use crate::binning::Membership;
use crate::ood::PrEstimator;
use crate::scoring::NllVariant;

/// The precision of the probabilities every metric is computed from: how they are formed from logits, and
/// whether given probabilities are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoftmaxPrecision {
    /// Softmax of logits in f64, kept in f64; given probabilities are used as they are.
    F64,
    /// float32 probabilities, as in the seed: `torch.softmax` on float32 logits emulated in float32 arithmetic
    /// (see [`softmax_f32_into`](crate::summary::softmax_f32_into); over-confident rows saturate to exactly 1.0
    /// as they do in the seed), and given probabilities (float64 ones included) rounded to float32 before any
    /// metric, as torchmetrics does with confidences (`.float()`) before binning.
    F32,
}

/// Which FPR@95TPR convention is reported as `fpr95`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fpr95Convention {
    /// ID positive, exact k-th largest ID score threshold.
    IdposExact,
    /// ID positive, `np.interp(0.95, tpr, fpr)` on sklearn's ROC curve (ood_metrics; the paper).
    IdposInterp,
    /// OOD positive, first ROC point with TPR ≥ 0.95 (OpenOOD).
    OodposFirst,
}

impl Fpr95Convention {
    /// The name used in `definitions`.
    pub fn name(self) -> &'static str {
        match self {
            Fpr95Convention::IdposExact => "idpos-exact",
            Fpr95Convention::IdposInterp => "idpos-interp",
            Fpr95Convention::OodposFirst => "oodpos-first",
        }
    }
}

/// Per-example OOD score (larger = more in-distribution).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum OodScore {
    /// Maximum softmax probability.
    Msp,
    /// Maximum logit (needs logits).
    MaxLogit,
    /// Energy `T·logsumexp(z/T)` (needs logits).
    Energy {
        /// Temperature T.
        temperature: f64,
    },
    /// Negative entropy of the predictive distribution.
    NegEntropy,
}

impl OodScore {
    /// Parses `msp`, `max-logit`, `energy` (T = 1) or `neg-entropy`.
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "msp" => OodScore::Msp,
            "max-logit" => OodScore::MaxLogit,
            "energy" => OodScore::Energy { temperature: 1.0 },
            "neg-entropy" => OodScore::NegEntropy,
            _ => return None,
        })
    }

    /// Human-readable name.
    pub fn describe(self) -> String {
        match self {
            OodScore::Msp => "msp (maximum softmax probability)".into(),
            OodScore::MaxLogit => "max-logit".into(),
            OodScore::Energy { temperature } => format!("energy T*logsumexp(z/T), T={temperature}"),
            OodScore::NegEntropy => "neg-entropy (sum_k p_k ln p_k)".into(),
        }
    }

    /// Whether the score needs logits rather than probabilities.
    pub fn needs_logits(self) -> bool {
        matches!(self, OodScore::MaxLogit | OodScore::Energy { .. })
    }
}

/// A named set of metric definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Profile name (`paper`, `default`, or a custom name when options were overridden).
    pub name: String,
    /// Number of equal-width bins M for ECE/MCE/RMSCE, classwise ECE and equal-mass ECE.
    pub num_bins: usize,
    /// Bin-membership convention.
    pub membership: Membership,
    /// NLL definition reported as `nll`.
    pub nll: NllVariant,
    /// How logits become probabilities.
    pub softmax: SoftmaxPrecision,
    /// FPR@95TPR convention reported as `fpr95`.
    pub fpr95: Fpr95Convention,
    /// OOD score.
    pub ood_score: OodScore,
    /// AUPR estimator reported as `aupr_in` / `aupr_out`.
    pub aupr: PrEstimator,
    /// Whether to compute equal-mass ECE (needs O(N) memory for the confidences).
    pub equal_mass: bool,
    /// Whether equal-mass bins keep tied confidences together.
    pub equal_mass_tie_safe: bool,
    /// Whether ECE/MCE are shown ×100 when rendered (JSON always holds fractions).
    pub render_ece_percent: bool,
    /// Tolerance on |Σ_k p_k − 1| when probabilities are given.
    pub prob_sum_tolerance: f64,
}

impl Profile {
    /// The seed's (paper's) definitions, seed-system.md §10.5 / metrics.md §3.7.
    pub fn paper() -> Self {
        Profile {
            name: "paper".into(),
            num_bins: 10,
            membership: Membership::Torchmetrics,
            nll: NllVariant::SklearnClipped,
            softmax: SoftmaxPrecision::F32,
            fpr95: Fpr95Convention::IdposInterp,
            ood_score: OodScore::Msp,
            aupr: PrEstimator::Trapezoid,
            equal_mass: false,
            equal_mass_tie_safe: false,
            render_ece_percent: true,
            prob_sum_tolerance: 1e-3,
        }
    }

    /// Recommended exact definitions.
    pub fn default_profile() -> Self {
        Profile {
            name: "default".into(),
            num_bins: 15,
            membership: Membership::Torchmetrics,
            nll: NllVariant::Exact,
            softmax: SoftmaxPrecision::F64,
            fpr95: Fpr95Convention::IdposExact,
            ood_score: OodScore::Msp,
            aupr: PrEstimator::AveragePrecision,
            equal_mass: true,
            equal_mass_tie_safe: true,
            render_ece_percent: false,
            prob_sum_tolerance: 1e-3,
        }
    }

    /// `paper` or `default`.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "paper" => Some(Self::paper()),
            "default" => Some(Self::default_profile()),
            _ => None,
        }
    }

    /// The definitions object recorded with every result.
    pub fn definitions(&self, input_kind: &str) -> Definitions {
        Definitions {
            profile: self.name.clone(),
            input: input_kind.to_string(),
            probabilities: match (input_kind, self.softmax) {
                ("probabilities", SoftmaxPrecision::F64) => "as given (rows checked to sum to 1)".into(),
                ("probabilities", SoftmaxPrecision::F32) => "as given, rounded to float32 before any metric (the seed's probabilities are float32; torchmetrics casts confidences to float32 before binning); rows checked to sum to 1".into(),
                (_, SoftmaxPrecision::F64) => "softmax of logits in float64".into(),
                (_, SoftmaxPrecision::F32) => "softmax of logits in float32 arithmetic (as torch.softmax on float32 logits)".into(),
            },
            accuracy: "fraction with argmax_k p_k == y (ties -> lowest index)".into(),
            ece: format!("top-label, equal-width, {} bins, {}; fraction (x100 when rendered: {})", self.num_bins, self.membership.describe(), self.render_ece_percent),
            num_bins: self.num_bins,
            membership: self.membership,
            mce: "max over non-empty bins of |acc - conf|, same bins as ece".into(),
            rmsce: "sqrt(sum_m w_m (acc_m - conf_m)^2), same bins as ece".into(),
            ece_em: if self.equal_mass {
                format!(
                    "equal-mass top-label ECE, {} chunks of sorted confidences (tensor_split sizes){}",
                    self.num_bins,
                    if self.equal_mass_tie_safe { ", tie-safe (ties never split)" } else { ", ties may straddle chunks (torch-uncertainty)" }
                )
            } else {
                "not computed".into()
            },
            classwise_ece: format!("(1/K) sum_k sum_m (n_km/N)|freq_km - conf_km|, {} equal-width bins on p_ik, {}", self.num_bins, self.membership.name()),
            nll: match self.nll {
                NllVariant::Exact => "exact: mean -log softmax(z)_y via log-softmax in float64 (or -ln p_y of given probabilities; +inf, written \"inf\", when some p_y = 0), nats".into(),
                NllVariant::SklearnClipped => "sklearn 1.1.3 log_loss: clip to [1e-15, 1-1e-15], renormalise rows, mean -ln p_y, nats".into(),
            },
            nll_variant: self.nll,
            brier: "canonical: mean_i sum_k (p_ik - 1[y_i=k])^2, in [0, 2]".into(),
            brier_div_k: "brier / K (the seed's sklearn mean_squared_error on one-hot targets)".into(),
            ood_score: self.ood_score.describe(),
            auroc: "P(s_in > s_out) + 0.5 P(s_in = s_out), exact (Mann-Whitney), ID positive".into(),
            fpr95: match self.fpr95 {
                Fpr95Convention::IdposExact => "ID positive; tau = ceil(0.95 N_in)-th largest ID score; fraction of OOD with s >= tau".into(),
                Fpr95Convention::IdposInterp => "ID positive; np.interp(0.95, tpr, fpr) on sklearn roc_curve(drop_intermediate=True) (ood_metrics.fpr_at_95_tpr)".into(),
                Fpr95Convention::OodposFirst => "OOD positive (score -s); FPR at the first roc_curve point with TPR >= 0.95 (OpenOOD)".into(),
            },
            fpr95_convention: self.fpr95,
            aupr: match self.aupr {
                PrEstimator::AveragePrecision => "average precision sum_n (R_n - R_{n-1}) P_n (sklearn average_precision_score)".into(),
                PrEstimator::Trapezoid => "trapezoid auc(recall, precision) on sklearn 1.1.3 precision_recall_curve (OpenOOD, ood_metrics)".into(),
            },
        }
    }
}

/// Names every definition used for a [`Summary`](crate::summary::Summary) (serialised with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Definitions {
    pub profile: String,
    pub input: String,
    pub probabilities: String,
    pub accuracy: String,
    pub ece: String,
    pub num_bins: usize,
    pub membership: Membership,
    pub mce: String,
    pub rmsce: String,
    pub ece_em: String,
    pub classwise_ece: String,
    pub nll: String,
    pub nll_variant: NllVariant,
    pub brier: String,
    pub brier_div_k: String,
    pub ood_score: String,
    pub auroc: String,
    pub fpr95: String,
    pub fpr95_convention: Fpr95Convention,
    pub aupr: String,
}
