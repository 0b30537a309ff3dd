//! TST head (`encoder MLP → linear decoder`) and REINIT head (`Linear(F → K)`), seed-system.md §6.1–6.2.
//!
//! There is no nonlinearity between the latent z and the decoder, exactly as in the seed (§6.1 note), so
//! a size-3 TST head is a one-hidden-layer MLP of width 3Z with a rank-Z bottleneck.

use tch::{nn, nn::Module, Tensor};

use super::{torch_default_linear, HeadConfig};

/// The encoder MLP shared by TST (one) and V-TST (two: mean and log-variance).
///
/// Layers `widths[i] → widths[i+1]`, ReLU between consecutive layers, no activation after the last.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
}

impl Mlp {
    /// Registers the layers as `<vs>/<i>/{weight,bias}`.
    pub fn new(vs: nn::Path, widths: &[i64]) -> Self {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| torch_default_linear(&vs / i.to_string(), w[0], w[1]))
            .collect();
        Mlp { layers }
    }

    /// `[N, widths[0]] → [N, widths.last()]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let mut h = self.layers[0].forward(xs);
        for layer in &self.layers[1..] {
            h = layer.forward(&h.relu());
        }
        h
    }
}

/// Deterministic two-stage head: `logits = decoder(encoder(f))`.
#[derive(Debug)]
pub struct TstHead {
    /// The configuration that built this head.
    pub config: HeadConfig,
    encoder: Mlp,
    decoder: nn::Linear,
}

impl TstHead {
    /// Variables: `encoder/<i>/…`, `decoder/…`.
    pub fn new(vs: &nn::Path, config: HeadConfig) -> Self {
        let encoder = Mlp::new(vs / "encoder", &config.encoder_widths());
        let decoder = torch_default_linear(vs / "decoder", config.latent_dim, config.num_classes);
        TstHead {
            config,
            encoder,
            decoder,
        }
    }

    /// The latent `z = encoder(f)`, `[N, Z]`.
    pub fn latent(&self, features: &Tensor) -> Tensor {
        self.encoder.forward(features)
    }

    /// Logits `[N, K]` from features `[N, F]`.
    pub fn forward(&self, features: &Tensor) -> Tensor {
        self.decoder.forward(&self.latent(features))
    }
}

/// REINIT: a fresh linear classifier on the frozen features.
#[derive(Debug)]
pub struct ReinitHead {
    /// The configuration that built this head.
    pub config: HeadConfig,
    linear: nn::Linear,
}

impl ReinitHead {
    /// Variables: `linear/…`.
    pub fn new(vs: &nn::Path, config: HeadConfig) -> Self {
        let linear = torch_default_linear(vs / "linear", config.feature_dim, config.num_classes);
        ReinitHead { config, linear }
    }

    /// Logits `[N, K]` from features `[N, F]`.
    pub fn forward(&self, features: &Tensor) -> Tensor {
        self.linear.forward(features)
    }
}
