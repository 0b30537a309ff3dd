//! Stage-2 heads over frozen backbone features: TST, V-TST and REINIT (seed-system.md §6).
//!
//! 1. **TST** (two-stage training): an encoder MLP `F → … → Z` (ReLU between layers, none after the
//!    last) followed by a linear decoder `Z → K` (§6.1–6.2).
//! 2. **V-TST** (variational TST): a mean MLP and a separate log-variance MLP of the same shape, the latter
//!    followed by `logsigmoid` so that σ² ∈ (0, 1]; `z = μ + σ ⊙ ε`; the decoder maps `z` to logits. The
//!    training loss is `CE + KL(q(z|f) ‖ N(0, I)) / Z` (§6.3, §7.2). At test time the predictive
//!    distribution is the **mean of the per-sample softmaxes** (§6.4).
//! 3. **REINIT**: a freshly initialised `Linear(F → K)` (§3.2, "REINIT").
//!
//! `mlp_size` counts the linear layers of the whole classifier, as in the seed: 3 → `F→3Z→Z→K`,
//! 4 → `F→6Z→3Z→Z→K`, 5 → `F→9Z→6Z→3Z→Z→K`. Unlike the seed (BUG-18) every size is parameterised by the
//! feature width F, so MLP4/MLP5 heads work on ResNet-50 (F = 2048) and CNN (F = 84) features too.
//!
//! Every linear layer is initialised explicitly with PyTorch's default (`kaiming_uniform_(a=√5)` weights,
//! i.e. U(±1/√fan_in), and U(±1/√fan_in) biases), which is *not* tch's default (tch uses the ReLU gain).
//!
//! Stochastic behaviour is in the signatures (STYLE R5): sampling functions take the number of samples and
//! a caller-owned [`NormalRng`].

pub mod rng;
pub mod tst;
pub mod vtst;

pub use rng::NormalRng;
pub use tst::{ReinitHead, TstHead};
pub use vtst::{kl_div_per_example, VtstHead};

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Which head to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Deterministic MLP head (TST).
    Tst,
    /// Variational head (V-TST).
    Vtst,
    /// A fresh linear layer on the features (REINIT).
    Reinit,
}

impl HeadKind {
    /// Lower-case name used in configs, paths and records: `tst`, `vtst`, `reinit`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Tst => "tst",
            HeadKind::Vtst => "vtst",
            HeadKind::Reinit => "reinit",
        }
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The complete architecture of a head. Serialised next to every head checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeadConfig {
    /// TST, V-TST or REINIT.
    pub kind: HeadKind,
    /// F, the width of the backbone feature (640 for WRN-28-10, 84 for the CNN, 2048 for ResNet-50).
    pub feature_dim: i64,
    /// Z, the latent width (the seed's `--latent_dim`; ignored by REINIT).
    pub latent_dim: i64,
    /// K, the number of classes.
    pub num_classes: i64,
    /// Linear layers of the whole classifier: 3, 4 or 5 (the seed's `--mlp_size`; ignored by REINIT).
    pub mlp_size: usize,
}

/// A head configuration that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// A dimension is zero or negative.
    #[error("head config: {what} must be positive, got {value}")]
    NonPositive {
        /// Which dimension.
        what: &'static str,
        /// The value given.
        value: i64,
    },
    /// `mlp_size` is not 3, 4 or 5.
    #[error(
        "head config: mlp_size must be 3, 4 or 5 (linear layers of the whole classifier), got {0}"
    )]
    MlpSize(usize),
    /// The head expects a different feature width than the backbone provides.
    #[error("head expects {expected}-dimensional features but the backbone gives {actual}")]
    FeatureDim {
        /// The head's `feature_dim`.
        expected: i64,
        /// The backbone's feature width.
        actual: i64,
    },
}

impl HeadConfig {
    /// TST head with the seed's default depth (`mlp_size = 3`).
    pub fn tst(feature_dim: i64, latent_dim: i64, num_classes: i64) -> Self {
        HeadConfig {
            kind: HeadKind::Tst,
            feature_dim,
            latent_dim,
            num_classes,
            mlp_size: 3,
        }
    }

    /// V-TST head with the seed's default depth (`mlp_size = 3`).
    pub fn vtst(feature_dim: i64, latent_dim: i64, num_classes: i64) -> Self {
        HeadConfig {
            kind: HeadKind::Vtst,
            feature_dim,
            latent_dim,
            num_classes,
            mlp_size: 3,
        }
    }

    /// REINIT head: a fresh `Linear(F → K)`.
    pub fn reinit(feature_dim: i64, num_classes: i64) -> Self {
        HeadConfig {
            kind: HeadKind::Reinit,
            feature_dim,
            latent_dim: 0,
            num_classes,
            mlp_size: 1,
        }
    }

    /// The same head with another depth.
    pub fn with_mlp_size(mut self, mlp_size: usize) -> Self {
        self.mlp_size = mlp_size;
        self
    }

    /// Checks every dimension.
    pub fn validate(&self) -> Result<(), HeadError> {
        let positive = |what, value: i64| {
            if value > 0 {
                Ok(())
            } else {
                Err(HeadError::NonPositive { what, value })
            }
        };
        positive("feature_dim", self.feature_dim)?;
        positive("num_classes", self.num_classes)?;
        if self.kind != HeadKind::Reinit {
            positive("latent_dim", self.latent_dim)?;
            if !(3..=5).contains(&self.mlp_size) {
                return Err(HeadError::MlpSize(self.mlp_size));
            }
        }
        Ok(())
    }

    /// Checks that the head fits a backbone with `backbone_feature_dim`-wide features.
    pub fn check_feature_dim(&self, backbone_feature_dim: i64) -> Result<(), HeadError> {
        if self.feature_dim != backbone_feature_dim {
            return Err(HeadError::FeatureDim {
                expected: self.feature_dim,
                actual: backbone_feature_dim,
            });
        }
        Ok(())
    }

    /// Widths of the encoder's layers from input to output: `[F, 3Z, Z]`, `[F, 6Z, 3Z, Z]` or
    /// `[F, 9Z, 6Z, 3Z, Z]` (seed-system.md §6.1).
    pub fn encoder_widths(&self) -> Vec<i64> {
        let z = self.latent_dim;
        let hidden: Vec<i64> = match self.mlp_size {
            4 => vec![6 * z, 3 * z],
            5 => vec![9 * z, 6 * z, 3 * z],
            _ => vec![3 * z],
        };
        let mut widths = vec![self.feature_dim];
        widths.extend(hidden);
        widths.push(z);
        widths
    }

    /// Number of trainable parameters of the head this config builds (without building it).
    pub fn num_params(&self) -> i64 {
        let linear = |i: i64, o: i64| i * o + o;
        match self.kind {
            HeadKind::Reinit => linear(self.feature_dim, self.num_classes),
            HeadKind::Tst | HeadKind::Vtst => {
                let widths = self.encoder_widths();
                let encoder: i64 = widths.windows(2).map(|w| linear(w[0], w[1])).sum();
                let encoders = if self.kind == HeadKind::Vtst { 2 } else { 1 };
                encoders * encoder + linear(self.latent_dim, self.num_classes)
            }
        }
    }

    /// Builds the head's variables under `vs` (PyTorch-default initialisation from libtorch's global
    /// generator: seed it with `tch::manual_seed` first for a reproducible head).
    pub fn build(&self, vs: &nn::Path) -> Result<Head, HeadError> {
        self.validate()?;
        Ok(match self.kind {
            HeadKind::Tst => Head::Tst(TstHead::new(vs, self.clone())),
            HeadKind::Vtst => Head::Vtst(VtstHead::new(vs, self.clone())),
            HeadKind::Reinit => Head::Reinit(ReinitHead::new(vs, self.clone())),
        })
    }
}

/// Per-sample outputs of a head.
///
/// # Shapes
/// - `logits`: `[S, N, K]` (S = number of samples; S = 1 for deterministic heads)
/// - `kl`: `[N]`, `KL(q(z|f_n) ‖ N(0, I)) / Z` per example (zeros for deterministic heads)
#[derive(Debug)]
pub struct HeadSamples {
    /// Logits per sample.
    pub logits: Tensor,
    /// KL divergence to the prior divided by Z, per example.
    pub kl: Tensor,
}

/// A built head.
#[derive(Debug)]
pub enum Head {
    /// TST.
    Tst(TstHead),
    /// V-TST.
    Vtst(VtstHead),
    /// REINIT.
    Reinit(ReinitHead),
}

impl Head {
    /// The configuration that built this head.
    pub fn config(&self) -> &HeadConfig {
        match self {
            Head::Tst(h) => &h.config,
            Head::Vtst(h) => &h.config,
            Head::Reinit(h) => &h.config,
        }
    }

    /// Whether predictions depend on random draws.
    pub fn is_stochastic(&self) -> bool {
        matches!(self, Head::Vtst(_))
    }

    /// Training-time forward: `num_samples` latent draws for V-TST (each with its own ε from `rng`),
    /// one deterministic pass otherwise.
    ///
    /// `features`: `[N, F]`. See [`HeadSamples`] for the output shapes.
    pub fn forward_samples(
        &self,
        features: &Tensor,
        num_samples: usize,
        rng: &mut NormalRng,
    ) -> HeadSamples {
        match self {
            Head::Vtst(h) => h.forward_samples(features, num_samples, rng),
            Head::Tst(_) | Head::Reinit(_) => {
                let logits = self.deterministic_logits(features).unsqueeze(0); // [1, N, K]
                let kl = Tensor::zeros([features.size()[0]], (Kind::Float, features.device()));
                HeadSamples { logits, kl }
            }
        }
    }

    /// Logits without sampling `[N, K]`: TST / REINIT logits; for V-TST the decoder applied to the mean
    /// latent μ (the "m = 0" prediction rule, seed-system.md §15 Q-7).
    pub fn deterministic_logits(&self, features: &Tensor) -> Tensor {
        match self {
            Head::Tst(h) => h.forward(features),
            Head::Vtst(h) => h.mean_logits(features),
            Head::Reinit(h) => h.forward(features),
        }
    }

    /// Log of the predictive distribution `[N, K]`.
    ///
    /// For V-TST with `num_samples = m ≥ 1`: `log((1/m) Σ_s softmax(logits_s))` computed as a
    /// log-mean-exp of log-softmaxes (mean of probabilities, not softmax of mean logits; §6.4);
    /// `num_samples = 0` means "decode the mean latent μ". Deterministic heads ignore `num_samples`.
    pub fn predictive_log_probs(
        &self,
        features: &Tensor,
        num_samples: usize,
        rng: &mut NormalRng,
    ) -> Tensor {
        if !self.is_stochastic() || num_samples == 0 {
            return self
                .deterministic_logits(features)
                .log_softmax(-1, Kind::Float);
        }
        let samples = self.forward_samples(features, num_samples, rng);
        mean_of_softmaxes_log(&samples.logits)
    }
}

/// `log((1/S) Σ_s softmax(logits[s]))` for `logits: [S, N, K]`, returned as `[N, K]`.
pub fn mean_of_softmaxes_log(logits: &Tensor) -> Tensor {
    let num_samples = logits.size()[0] as f64;
    logits
        .log_softmax(-1, Kind::Float)
        .logsumexp([0i64].as_slice(), false)
        - num_samples.ln()
}

/// Builds a linear layer with PyTorch's default initialisation: weight and bias ~ U(±1/√fan_in).
pub(crate) fn torch_default_linear(vs: nn::Path, in_dim: i64, out_dim: i64) -> nn::Linear {
    let bound = 1.0 / (in_dim as f64).sqrt();
    let init = nn::Init::Uniform {
        lo: -bound,
        up: bound,
    };
    nn::linear(
        vs,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: init,
            bs_init: Some(init),
            bias: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn built_params(config: &HeadConfig) -> i64 {
        let vs = nn::VarStore::new(Device::Cpu);
        let _head = config.build(&vs.root()).unwrap();
        vs.trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum()
    }

    /// Parameter counts of seed-system.md §6.1 / §16, both from the formula and from built heads.
    #[test]
    fn head_parameter_counts_match_the_seed() {
        let cases = [
            (HeadConfig::tst(640, 128, 10), 296_714),
            (HeadConfig::vtst(640, 128, 10), 592_138),
            (HeadConfig::tst(640, 32, 10), 64_970),
            (HeadConfig::vtst(640, 32, 10), 129_610),
            (HeadConfig::tst(640, 512, 100), 1_822_820),
            (HeadConfig::vtst(640, 512, 100), 3_594_340),
            (HeadConfig::tst(640, 128, 10).with_mlp_size(4), 838_154),
            (HeadConfig::tst(2048, 128, 10), 837_386),
            (HeadConfig::tst(84, 128, 10), 83_210),
            (HeadConfig::tst(768, 128, 200), 370_376),
            (HeadConfig::reinit(640, 10), 6_410),
        ];
        for (config, expected) in cases {
            assert_eq!(config.num_params(), expected, "{config:?}");
            assert_eq!(built_params(&config), expected, "{config:?}");
        }
    }

    /// BUG-18: MLP4/MLP5 heads take the backbone's F, not a hard-coded 640.
    #[test]
    fn deep_heads_are_parameterised_by_feature_dim() {
        let config = HeadConfig::tst(2048, 16, 10).with_mlp_size(5);
        assert_eq!(config.encoder_widths(), vec![2048, 144, 96, 48, 16]);
        let vs = nn::VarStore::new(Device::Cpu);
        let head = config.build(&vs.root()).unwrap();
        let logits =
            head.deterministic_logits(&Tensor::ones([3, 2048], (Kind::Float, Device::Cpu)));
        assert_eq!(logits.size(), vec![3, 10]);
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert_eq!(
            HeadConfig::tst(640, 128, 10).with_mlp_size(6).validate(),
            Err(HeadError::MlpSize(6))
        );
        assert!(HeadConfig::tst(0, 128, 10).validate().is_err());
        assert!(HeadConfig::vtst(640, 0, 10).validate().is_err());
        let err = HeadConfig::tst(640, 128, 10)
            .check_feature_dim(84)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "head expects 640-dimensional features but the backbone gives 84"
        );
    }

    /// PyTorch's default Linear init: every weight and bias within ±1/√fan_in, and the bound is actually
    /// reached (tch's own default would use a √6 times wider bound).
    #[test]
    fn linear_layers_use_pytorch_default_init() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _head = crate::seeded(0, || HeadConfig::tst(400, 8, 10).build(&vs.root())).unwrap();
        for (name, t) in vs.variables() {
            let fan_in = if name.contains("decoder") {
                8.0
            } else if name.contains(".0.") {
                400.0
            } else {
                24.0
            };
            let bound = 1.0 / f64::sqrt(fan_in);
            let max = t.abs().max().double_value(&[]);
            assert!(max <= bound + 1e-7, "{name}: max {max} > {bound}");
            if t.numel() > 1000 {
                assert!(max > 0.9 * bound, "{name}: max {max} far below {bound}");
            }
        }
    }

    #[test]
    fn mean_of_softmaxes_matches_hand_computation() {
        // Two samples, one example, two classes: softmax([0, ln 3]) = [0.25, 0.75], softmax([0, 0]) = [0.5, 0.5];
        // the mean is [0.375, 0.625]. The softmax of the mean logits would be softmax([0, ln3/2]) ≈ [0.366, 0.634].
        let logits = Tensor::from_slice(&[0.0f32, 3f32.ln(), 0.0, 0.0]).reshape([2, 1, 2]);
        let probs = mean_of_softmaxes_log(&logits).exp();
        let p: Vec<f32> = Vec::try_from(probs.flatten(0, -1)).unwrap();
        assert!(
            (p[0] - 0.375).abs() < 1e-6 && (p[1] - 0.625).abs() < 1e-6,
            "{p:?}"
        );
    }
}
