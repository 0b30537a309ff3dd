//! V-TST head: a variational latent between the frozen features and the decoder (seed-system.md §6.3, §7.2).
//!
//! 1. `μ = mean_mlp(f)`, `logvar = logsigmoid(logvar_mlp(f)) ≤ 0`, so `σ² ∈ (0, 1]` (the seed's
//!    `bound_qzx_var = True`, the only working path).
//! 2. Reparameterisation (Kingma & Welling 2014): `z_s = μ + exp(logvar / 2) ⊙ ε_s`, `ε_s ~ N(0, I)`, with ε
//!    drawn from a caller-owned [`NormalRng`].
//! 3. `logits_s = decoder(z_s)`; loss = `CE + KL(N(μ, σ²) ‖ N(0, I)) / Z` (the seed's effective β = 1/Z).

use tch::{nn, nn::Module, Tensor};

use super::tst::Mlp;
use super::{torch_default_linear, HeadConfig, HeadSamples, NormalRng};

/// Variational two-stage head.
#[derive(Debug)]
pub struct VtstHead {
    /// The configuration that built this head.
    pub config: HeadConfig,
    mean: Mlp,
    logvar: Mlp,
    decoder: nn::Linear,
}

/// `KL(N(μ, diag σ²) ‖ N(0, I)) / Z` per example, seed-system.md §7.2:
/// `−0.5 · Σ_j (1 + logvar_j − μ_j² − exp(logvar_j)) / Z`.
///
/// `mu`, `logvar`: `[N, Z]`. Returns `[N]`.
pub fn kl_div_per_example(mu: &Tensor, logvar: &Tensor) -> Tensor {
    let latent_dim = mu.size()[1] as f64;
    let terms = logvar - mu.square() - logvar.exp() + 1.0; // [N, Z]
    terms.sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Float) * (-0.5 / latent_dim)
}

impl VtstHead {
    /// Variables: `mean/<i>/…`, `logvar/<i>/…`, `decoder/…`.
    pub fn new(vs: &nn::Path, config: HeadConfig) -> Self {
        let widths = config.encoder_widths();
        let mean = Mlp::new(vs / "mean", &widths);
        let logvar = Mlp::new(vs / "logvar", &widths);
        let decoder = torch_default_linear(vs / "decoder", config.latent_dim, config.num_classes);
        VtstHead {
            config,
            mean,
            logvar,
            decoder,
        }
    }

    /// `(μ, logvar)`, each `[N, Z]`; `logvar ≤ 0`.
    pub fn encode(&self, features: &Tensor) -> (Tensor, Tensor) {
        let mu = self.mean.forward(features);
        let logvar = self.logvar.forward(features).log_sigmoid();
        (mu, logvar)
    }

    /// `num_samples` independent latent draws per example. `logits: [S, N, K]`, `kl: [N]`.
    pub fn forward_samples(
        &self,
        features: &Tensor,
        num_samples: usize,
        rng: &mut NormalRng,
    ) -> HeadSamples {
        let (mu, logvar) = self.encode(features);
        let kl = kl_div_per_example(&mu, &logvar);
        let size = mu.size(); // [N, Z]
                              // ε is drawn example-major ([N, S, Z]) so that example n always consumes the same stretch of the
                              // stream: predictions do not depend on how a caller chunks the examples.
        let eps = rng
            .normal_tensor(&[size[0], num_samples as i64, size[1]], mu.device())
            .transpose(0, 1); // [S, N, Z]
        let z = mu.unsqueeze(0) + (&logvar * 0.5).exp().unsqueeze(0) * eps; // [S, N, Z]
        HeadSamples {
            logits: self.decoder.forward(&z),
            kl,
        }
    }

    /// Logits of the mean latent, `decoder(μ)`: `[N, K]`.
    pub fn mean_logits(&self, features: &Tensor) -> Tensor {
        self.decoder.forward(&self.mean.forward(features))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heads::Head;
    use tch::{Device, Kind};

    fn scalar_values(t: &Tensor) -> Vec<f64> {
        Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }

    /// seed-system.md §16: μ = 0, logvar = 0 → 0; μ = 1 in every dim, logvar = 0 → 0.5 after ÷Z.
    #[test]
    fn kl_term_matches_the_seed_test_vectors() {
        let zeros = Tensor::zeros([2, 7], (Kind::Float, Device::Cpu));
        let ones = Tensor::ones([2, 7], (Kind::Float, Device::Cpu));
        assert_eq!(
            scalar_values(&kl_div_per_example(&zeros, &zeros)),
            vec![0.0, 0.0]
        );
        for v in scalar_values(&kl_div_per_example(&ones, &zeros)) {
            assert!((v - 0.5).abs() < 1e-7, "{v}");
        }
        // logvar = ln 0.5 in one of two dims, μ = 0: −0.5·(1 + ln 0.5 − 0.5)/2 = 0.048286795…
        let mu = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
        let logvar = Tensor::from_slice(&[0.5f32.ln(), 0.0]).reshape([1, 2]);
        let v = scalar_values(&kl_div_per_example(&mu, &logvar))[0];
        assert!((v - 0.048_286_795).abs() < 1e-6, "{v}");
    }

    /// The m-sample predictive equals a hand-written loop over the same ε draws, and the log-variance is
    /// bounded by 0.
    #[test]
    fn predictive_is_the_mean_of_per_sample_softmaxes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = HeadConfig::vtst(6, 4, 3);
        let head = crate::seeded(11, || config.build(&vs.root())).unwrap();
        let Head::Vtst(vtst) = &head else {
            panic!("built a V-TST config")
        };
        let features = Tensor::randn([5, 6], (Kind::Float, Device::Cpu));

        let mut rng = NormalRng::new(42);
        let log_probs = head.predictive_log_probs(&features, 10, &mut rng);

        // The same ε stream, consumed in the same order: one example-major [N, S, Z] block.
        let mut rng = NormalRng::new(42);
        let eps: Vec<f32> = (0..5 * 10 * 4).map(|_| rng.next_normal() as f32).collect();
        let eps_at = |s: usize, i: usize| eps[(i / 4) * 40 + s * 4 + i % 4];
        let (mu, logvar) = vtst.encode(&features);
        assert!(logvar.max().double_value(&[]) <= 0.0);
        let mu_v = scalar_values(&mu);
        let sd_v: Vec<f64> = scalar_values(&logvar)
            .iter()
            .map(|lv| (lv / 2.0).exp())
            .collect();
        let mut expected = vec![0.0f64; 5 * 3];
        for s in 0..10 {
            let z: Vec<f32> = (0..20)
                .map(|i| (mu_v[i] + sd_v[i] * eps_at(s, i) as f64) as f32)
                .collect();
            let logits = vtst
                .decoder
                .forward(&Tensor::from_slice(&z).reshape([5, 4]));
            let probs = scalar_values(&logits.softmax(-1, Kind::Float));
            for (e, p) in expected.iter_mut().zip(probs) {
                *e += p / 10.0;
            }
        }
        let got: Vec<f64> = scalar_values(&log_probs.exp());
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() < 1e-5, "got {got:?}\nexpected {expected:?}");
        }

        // Same seed → identical predictions (seeded evaluation, Q-7); another seed differs.
        let again = head.predictive_log_probs(&features, 10, &mut NormalRng::new(42));
        assert_eq!(scalar_values(&again), scalar_values(&log_probs));
        let other = head.predictive_log_probs(&features, 10, &mut NormalRng::new(43));
        assert_ne!(scalar_values(&other), scalar_values(&log_probs));

        // m = 0 decodes μ; it equals the mean-logit path exactly.
        let at_mean = head.predictive_log_probs(&features, 0, &mut rng);
        let direct = vtst.mean_logits(&features).log_softmax(-1, Kind::Float);
        assert_eq!(scalar_values(&at_mean), scalar_values(&direct));
    }

    #[test]
    fn training_forward_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let head = HeadConfig::vtst(8, 4, 5).build(&vs.root()).unwrap();
        let out = head.forward_samples(
            &Tensor::ones([3, 8], (Kind::Float, Device::Cpu)),
            7,
            &mut NormalRng::new(0),
        );
        assert_eq!(out.logits.size(), vec![7, 3, 5]);
        assert_eq!(out.kl.size(), vec![3]);
    }
}
