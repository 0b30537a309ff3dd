//! Stage-1 training losses on tch tensors (seed-system.md §7): cross-entropy, focal loss with a fixed
//! γ, adaptive focal loss (the seed's `--gammas`/`--probs` schedule, FLSD-53 of Mukhoti et al. 2020),
//! label smoothing, and an explicit L2 penalty.
//!
//! Every loss is a **batch mean** over examples and returns a scalar tensor that carries gradients.
//! Shapes: `logits` `[N, K]` (float), `labels` `[N]` (int64, values in `0..K`).
//!
//! Focal losses follow `src/utils/focal_loss.py` of the seed exactly: `p_t = exp(log_softmax(s)[y])`,
//! γ is chosen per example from `p_t` **without** a gradient through the choice, and the loss is
//! `mean_b −(1 − p_t)^γ_b · log p_t` with gradients flowing through both factors. γ enters as a
//! per-example tensor exponent, as in the seed (which builds `torch.tensor(gamma_list)`), so the
//! numerics match torch's `pow(Tensor, Tensor)` rather than the scalar-exponent fast paths.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

/// Errors of loss configuration and evaluation.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LossError {
    /// The γ schedule is malformed (lengths, ranges, ordering).
    #[error("invalid focal-loss schedule: {0}")]
    InvalidSchedule(String),
    /// Label smoothing outside `[0, 1)`.
    #[error("label smoothing must be in [0, 1), got {0}")]
    InvalidSmoothing(f64),
    /// The seed-exact adaptive focal loss is undefined for this `p_t` (seed-system.md §15 BUG-10).
    #[error(
        "adaptive focal loss (seed-exact mode) is undefined for p_t = {p_t} >= the largest threshold {threshold}: \
         the seed crashes here (BUG-10); use the default fixed mode"
    )]
    SeedUndefined {
        /// The offending probability of the true class.
        p_t: f64,
        /// The largest threshold of the schedule.
        threshold: f64,
    },
}

/// How the adaptive focal loss treats `p_t` at or above its largest threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdaptiveMode {
    /// BUG-10 fixed (default): `p_t ≥ last threshold` (and `p_t ≠ 1`) uses the last bin's γ.
    #[default]
    Fixed,
    /// The seed's behaviour: such a `p_t` is an error (the seed fails with a shape mismatch).
    Seed,
}

/// The seed's adaptive γ schedule: sorted thresholds `probs` with one γ each.
///
/// For one example: `p_t == 1` → γ of the smallest threshold (the seed's rule; harmless, the loss is
/// then exactly 0); otherwise the γ of the first (smallest) threshold with `p_t < threshold`; if there is
/// none, [`AdaptiveMode::Fixed`] uses the last γ and [`AdaptiveMode::Seed`] reports
/// [`LossError::SeedUndefined`].
#[derive(Debug, Clone, PartialEq)]
pub struct GammaSchedule {
    /// `(threshold, γ)` pairs sorted by ascending threshold.
    bins: Vec<(f64, f64)>,
    mode: AdaptiveMode,
}

impl GammaSchedule {
    /// Builds the schedule from the seed's parallel lists (`--gammas 5 3 --probs 0.2 1`).
    ///
    /// The seed builds `dict(zip(probs, gammas))`, so a repeated threshold keeps its last γ; decal rejects
    /// repeated thresholds instead because they are almost certainly a typo.
    pub fn new(gammas: &[f64], probs: &[f64], mode: AdaptiveMode) -> Result<Self, LossError> {
        if gammas.is_empty() {
            return Err(LossError::InvalidSchedule(
                "gammas and probs have to be defined for focal loss".into(),
            ));
        }
        if gammas.len() != probs.len() {
            return Err(LossError::InvalidSchedule(format!(
                "{} gammas but {} probs; they must have the same length",
                gammas.len(),
                probs.len()
            )));
        }
        for &g in gammas {
            if !(g.is_finite() && g >= 0.0) {
                return Err(LossError::InvalidSchedule(format!(
                    "gamma {g} must be finite and >= 0"
                )));
            }
        }
        for &p in probs {
            if !(p > 0.0 && p <= 1.0) {
                return Err(LossError::InvalidSchedule(format!(
                    "probability threshold {p} must be in (0, 1]"
                )));
            }
        }
        let mut bins: Vec<(f64, f64)> = probs.iter().copied().zip(gammas.iter().copied()).collect();
        bins.sort_by(|a, b| a.0.total_cmp(&b.0));
        if bins.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(LossError::InvalidSchedule(format!(
                "repeated probability threshold in {probs:?}"
            )));
        }
        Ok(GammaSchedule { bins, mode })
    }

    /// γ for one value of `p_t` (the scalar reference of [`GammaSchedule::gammas_for`]).
    pub fn gamma_for(&self, p_t: f64) -> Result<f64, LossError> {
        if p_t == 1.0 {
            return Ok(self.bins[0].1);
        }
        if let Some(&(_, g)) = self.bins.iter().find(|(thr, _)| p_t < *thr) {
            return Ok(g);
        }
        let &(threshold, last) = self
            .bins
            .last()
            .expect("schedule is non-empty by construction");
        match self.mode {
            AdaptiveMode::Fixed => Ok(last),
            AdaptiveMode::Seed => Err(LossError::SeedUndefined { p_t, threshold }),
        }
    }

    /// Vectorised γ per example: `p_t` `[N]` (any float kind, no gradient needed) → γ `[N]` in the
    /// kind of `p_t`. Comparisons are done in f64, as the seed compares Python floats.
    pub fn gammas_for(&self, p_t: &Tensor) -> Result<Tensor, LossError> {
        let p = p_t.detach().to_kind(Kind::Double);
        let &(last_thr, last_gamma) = self
            .bins
            .last()
            .expect("schedule is non-empty by construction");
        if self.mode == AdaptiveMode::Seed {
            let undefined = p.ge(last_thr).logical_and(&p.ne(1.0));
            if undefined.any().int64_value(&[]) != 0 {
                let first = p.masked_select(&undefined).double_value(&[0]);
                return Err(LossError::SeedUndefined {
                    p_t: first,
                    threshold: last_thr,
                });
            }
        }
        // Walk the bins from the largest threshold down so that the smallest matching threshold wins.
        let mut gamma = p.full_like(last_gamma);
        for &(thr, g) in self.bins.iter().rev() {
            gamma = gamma.where_self(&p.ge(thr), &p.full_like(g));
        }
        let gamma = gamma.where_self(&p.ne(1.0), &p.full_like(self.bins[0].1));
        Ok(gamma.to_kind(p_t.kind()))
    }
}

/// The loss of a stage-1 run, as written in `config.toml` (`kind = "ce" | "fl" | "fla" | "ls"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LossConfig {
    /// Cross-entropy (seed `--loss ce`).
    #[serde(rename = "ce")]
    #[default]
    CrossEntropy,
    /// Focal loss with a fixed γ (seed `--loss fl --gammas 3 --probs 1`; only `gammas[0]` is used).
    #[serde(rename = "fl")]
    Focal {
        /// γ.
        gamma: f64,
    },
    /// Adaptive focal loss (seed `--loss fla --gammas 5 3 --probs 0.2 1`).
    #[serde(rename = "fla")]
    AdaptiveFocal {
        /// γ per bin, parallel to `probs`.
        gammas: Vec<f64>,
        /// Upper thresholds on `p_t`, parallel to `gammas`.
        probs: Vec<f64>,
        /// `fixed` (default, BUG-10 fixed) or `seed`.
        #[serde(default)]
        mode: AdaptiveMode,
    },
    /// Cross-entropy against smoothed targets `(1 − ε)·onehot + ε/K` (PyTorch `label_smoothing=ε`).
    #[serde(rename = "ls")]
    LabelSmoothing {
        /// ε in `[0, 1)`.
        epsilon: f64,
    },
}

impl LossConfig {
    /// Short name used in logs and records: `ce`, `fl`, `fla`, `ls`.
    pub fn short_name(&self) -> &'static str {
        match self {
            LossConfig::CrossEntropy => "ce",
            LossConfig::Focal { .. } => "fl",
            LossConfig::AdaptiveFocal { .. } => "fla",
            LossConfig::LabelSmoothing { .. } => "ls",
        }
    }

    /// Checks the parameters and returns the ready-to-use loss.
    pub fn build(&self) -> Result<Loss, LossError> {
        Ok(match self {
            LossConfig::CrossEntropy => Loss::CrossEntropy,
            LossConfig::Focal { gamma } => {
                if !(gamma.is_finite() && *gamma >= 0.0) {
                    return Err(LossError::InvalidSchedule(format!(
                        "gamma {gamma} must be finite and >= 0"
                    )));
                }
                Loss::Focal(*gamma)
            }
            LossConfig::AdaptiveFocal {
                gammas,
                probs,
                mode,
            } => Loss::AdaptiveFocal(GammaSchedule::new(gammas, probs, *mode)?),
            LossConfig::LabelSmoothing { epsilon } => {
                if !(*epsilon >= 0.0 && *epsilon < 1.0) {
                    return Err(LossError::InvalidSmoothing(*epsilon));
                }
                Loss::LabelSmoothing(*epsilon)
            }
        })
    }
}

/// A validated loss, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// See [`cross_entropy`].
    CrossEntropy,
    /// See [`focal`].
    Focal(f64),
    /// See [`adaptive_focal`].
    AdaptiveFocal(GammaSchedule),
    /// See [`label_smoothing`].
    LabelSmoothing(f64),
}

impl Loss {
    /// The batch-mean loss of `logits` `[N, K]` against `labels` `[N]`.
    pub fn compute(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor, LossError> {
        match self {
            Loss::CrossEntropy => Ok(cross_entropy(logits, labels)),
            Loss::Focal(gamma) => Ok(focal(logits, labels, *gamma)),
            Loss::AdaptiveFocal(schedule) => adaptive_focal(logits, labels, schedule),
            Loss::LabelSmoothing(eps) => Ok(label_smoothing(logits, labels, *eps)),
        }
    }

    /// Like [`Loss::compute`] but summed over the batch instead of averaged (for exact
    /// sample-weighted means over a whole validation set).
    pub fn compute_sum(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor, LossError> {
        let n = logits.size()[0] as f64;
        Ok(self.compute(logits, labels)? * n)
    }
}

/// Cross-entropy `−mean_b log softmax(s_b)[y_b]` (natural log; `torch.nn.functional.cross_entropy`).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// Label-smoothed cross-entropy with PyTorch's `cross_entropy(label_smoothing=ε)` semantics:
/// target `q = (1 − ε)·onehot(y) + ε/K`, loss `mean_b −Σ_k q_k log p_k`.
pub fn label_smoothing(logits: &Tensor, labels: &Tensor, epsilon: f64) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, epsilon)
}

/// `log p_t` per example, `[N]`.
fn log_pt(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits
        .log_softmax(1, logits.kind())
        .gather(1, &labels.view([-1, 1]), false)
        .view([-1])
}

fn focal_with_gammas(logpt: &Tensor, gammas: &Tensor) -> Tensor {
    let pt = logpt.exp();
    // −(1 − p_t)^γ · log p_t, averaged over the batch; the gradient flows through both p_t factors.
    (-(pt.ones_like() - pt).pow(gammas) * logpt).mean(logpt.kind())
}

/// Focal loss with a fixed γ (Lin et al. 2017; seed `--loss fl`).
pub fn focal(logits: &Tensor, labels: &Tensor, gamma: f64) -> Tensor {
    let logpt = log_pt(logits, labels);
    let gammas = logpt.detach().full_like(gamma);
    focal_with_gammas(&logpt, &gammas)
}

/// Adaptive focal loss: γ chosen per example from `p_t` by `schedule` (seed `--loss fla`).
pub fn adaptive_focal(
    logits: &Tensor,
    labels: &Tensor,
    schedule: &GammaSchedule,
) -> Result<Tensor, LossError> {
    let logpt = log_pt(logits, labels);
    let gammas = schedule.gammas_for(&logpt.detach().exp())?;
    Ok(focal_with_gammas(&logpt, &gammas))
}

/// Explicit L2 penalty `λ · Σ_θ Σ θ²` over `params` (added to the loss; seed-system.md §7.4).
///
/// Its gradient is `2λθ`, so it is equivalent to **coupled** weight decay `2λ` in Adam/SGD
/// (torch's `weight_decay`), and *not* to AdamW's decoupled decay. Returns a scalar in the kind of the
/// first parameter (zero when `params` is empty).
pub fn l2_penalty(params: &[Tensor], lambda: f64) -> Tensor {
    let mut total = match params.first() {
        Some(p) => Tensor::zeros([], (p.kind(), p.device())),
        None => return Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
    };
    for p in params {
        total += p.square().sum(p.kind());
    }
    total * lambda
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flsd53(mode: AdaptiveMode) -> GammaSchedule {
        GammaSchedule::new(&[5.0, 3.0], &[0.2, 1.0], mode).unwrap()
    }

    #[test]
    fn seed_spec_16_cases() {
        // seed-system.md §16: (5/3 @ 0.2, 1): p_t = 0.1 → 5, 0.5 → 3, 1.0 → 5.
        for mode in [AdaptiveMode::Fixed, AdaptiveMode::Seed] {
            let s = flsd53(mode);
            assert_eq!(s.gamma_for(0.1).unwrap(), 5.0);
            assert_eq!(s.gamma_for(0.5).unwrap(), 3.0);
            assert_eq!(s.gamma_for(1.0).unwrap(), 5.0);
            let p = Tensor::from_slice(&[0.1f32, 0.5, 1.0, 0.2, 0.19999]);
            let g = s.gammas_for(&p).unwrap();
            assert_eq!(
                Vec::<f32>::try_from(&g).unwrap(),
                vec![5.0, 3.0, 5.0, 3.0, 5.0]
            );
        }
        // p_t = 1 exactly gives loss 0 whatever γ.
        let logits = Tensor::from_slice(&[200.0f32, 0.0, 0.0]).view([1, 3]);
        let labels = Tensor::from_slice(&[0i64]);
        let loss = adaptive_focal(&logits, &labels, &flsd53(AdaptiveMode::Fixed)).unwrap();
        assert_eq!(loss.double_value(&[]), 0.0);
    }

    #[test]
    fn bug10_fixed_vs_seed() {
        let fixed = GammaSchedule::new(&[5.0, 3.0], &[0.2, 0.5], AdaptiveMode::Fixed).unwrap();
        let seed = GammaSchedule::new(&[5.0, 3.0], &[0.2, 0.5], AdaptiveMode::Seed).unwrap();
        assert_eq!(fixed.gamma_for(0.7).unwrap(), 3.0);
        assert!(matches!(
            seed.gamma_for(0.7),
            Err(LossError::SeedUndefined { .. })
        ));
        let p = Tensor::from_slice(&[0.1f32, 0.7]);
        assert_eq!(
            Vec::<f32>::try_from(&fixed.gammas_for(&p).unwrap()).unwrap(),
            vec![5.0, 3.0]
        );
        let err = seed.gammas_for(&p).unwrap_err();
        assert!(err.to_string().contains("BUG-10"), "{err}");
    }

    #[test]
    fn schedule_validation() {
        assert!(GammaSchedule::new(&[5.0], &[0.2, 1.0], AdaptiveMode::Fixed).is_err());
        assert!(GammaSchedule::new(&[], &[], AdaptiveMode::Fixed).is_err());
        assert!(GammaSchedule::new(&[1.0, 2.0], &[0.5, 0.5], AdaptiveMode::Fixed).is_err());
        assert!(GammaSchedule::new(&[1.0], &[1.5], AdaptiveMode::Fixed).is_err());
        // Unsorted input is sorted by threshold, keeping each γ with its threshold.
        let s = GammaSchedule::new(&[3.0, 5.0], &[1.0, 0.2], AdaptiveMode::Fixed).unwrap();
        assert_eq!(s.gamma_for(0.1).unwrap(), 5.0);
        assert!(LossConfig::LabelSmoothing { epsilon: 1.0 }.build().is_err());
    }

    #[test]
    fn focal_gamma_zero_is_cross_entropy() {
        let logits = Tensor::from_slice(&[0.3f64, -1.0, 2.0, 0.5, 0.1, -0.2]).view([2, 3]);
        let labels = Tensor::from_slice(&[2i64, 0]);
        let a = focal(&logits, &labels, 0.0).double_value(&[]);
        let b = cross_entropy(&logits, &labels).double_value(&[]);
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn l2_penalty_value() {
        let a = Tensor::from_slice(&[1.0f32, 2.0]);
        let b = Tensor::from_slice(&[3.0f32]);
        assert_eq!(l2_penalty(&[a, b], 0.5).double_value(&[]), 7.0);
    }
}
