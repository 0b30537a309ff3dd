//! The real EfficientNet-B0…B7 family (Tan & Le, ICML 2019) in torchvision's layout (`torchvision.models.
//! efficientnet_b0` … `_b7`), built from the B0 stage table by the width and depth multipliers.
//!
//! Unlike the seed's CIFAR "EfficientNet-B5" ([`crate::efficientnet`], BUG-12) this has the stride-2 stem,
//! no expansion conv in expand-ratio-1 blocks, the 1×1 head conv to 4 × (last stage width) channels (1280 for
//! B0) and stochastic depth with rate `0.2 · b / num_blocks` for block `b`. Channel counts are rounded with
//! torchvision's `_make_divisible(c · width, 8)`, block counts with `ceil(n · depth)`. BatchNorm eps 1e-5,
//! momentum 0.1 (torchvision's EfficientNet V1); SE bottleneck `max(1, in // 4)`; SiLU activations.
//! The dropout torchvision puts in `classifier.0` is applied at the end of the body here (train mode only), so
//! the classifier head stays a single Linear, `classifier.1` as in torchvision's state_dict.
//!
//! Variable names equal torchvision's state_dict keys: `features.0.{0,1}` (stem), `features.{s}.{j}.block.{i}…`
//! (`{0,1}` conv/BN pairs, `fc1`/`fc2` for the SE), `features.{last}.{0,1}` (head conv), `classifier.1`.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::init::{batch_norm2d, global_avg_pool, Conv};
use crate::resnet::TORCH_BN_MOMENTUM;
use crate::{Backbone, ModelError};

/// EfficientNet-B0 stages: (expand ratio, kernel, stride, input channels, output channels, blocks).
pub const B0_STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// (width multiplier, depth multiplier, dropout) of B0…B7, as torchvision.
pub const SCALING: [(f64, f64, f64); 8] = [
    (1.0, 1.0, 0.2),
    (1.0, 1.1, 0.2),
    (1.1, 1.2, 0.3),
    (1.2, 1.4, 0.3),
    (1.4, 1.8, 0.4),
    (1.6, 2.2, 0.4),
    (1.8, 2.6, 0.5),
    (2.0, 3.1, 0.5),
];

/// Configuration of a torchvision-layout EfficientNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TvEfficientNetConfig {
    /// Channel multiplier (1.0 for B0, 2.0 for B7).
    pub width_mult: f64,
    /// Block-count multiplier (1.0 for B0, 3.1 for B7).
    pub depth_mult: f64,
    /// Dropout on the pooled features in train mode.
    pub dropout: f64,
    /// Maximum stochastic-depth rate (0.2 in torchvision).
    pub stochastic_depth_prob: f64,
    /// Input channels.
    pub in_channels: i64,
    /// K.
    pub num_classes: i64,
}

/// torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never more than 10 % below `v`.
pub fn make_divisible(v: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut new_v = (divisor).max(((v + d / 2.0) as i64) / divisor * divisor);
    if (new_v as f64) < 0.9 * v {
        new_v += divisor;
    }
    new_v
}

impl TvEfficientNetConfig {
    /// EfficientNet-B`variant` (0…7) with torchvision's multipliers; `None` for other variants.
    pub fn b(variant: usize, num_classes: i64) -> Option<Self> {
        let (width_mult, depth_mult, dropout) = *SCALING.get(variant)?;
        Some(TvEfficientNetConfig {
            width_mult,
            depth_mult,
            dropout,
            stochastic_depth_prob: 0.2,
            in_channels: 3,
            num_classes,
        })
    }

    fn channels(&self, c: i64) -> i64 {
        make_divisible(c as f64 * self.width_mult, 8)
    }

    fn blocks(&self, n: i64) -> i64 {
        (n as f64 * self.depth_mult).ceil() as i64
    }

    /// F = 4 × the last stage's (scaled) width: 1280 for B0, 2560 for B7.
    pub fn feature_dim(&self) -> i64 {
        4 * self.channels(B0_STAGES[6].4)
    }

    /// Checks the multipliers and rates.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |p: &str| Err(ModelError::invalid("efficientnet (torchvision)", p));
        let in_range = |m: f64| m > 0.0 && m <= 16.0; // false for NaN
        if !in_range(self.width_mult) || !in_range(self.depth_mult) {
            return bad("width_mult and depth_mult must lie in (0, 16]");
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.stochastic_depth_prob)
        {
            return bad("dropout and stochastic_depth_prob must lie in [0, 1)");
        }
        if self.in_channels < 1 || self.num_classes < 1 {
            return bad("in_channels and num_classes must be >= 1");
        }
        Ok(())
    }

    /// Registers the body's variables under `vs`.
    pub fn build_body(&self, vs: &nn::Path) -> TvEfficientNet {
        let features = vs / "features";
        let stem_c = self.channels(B0_STAGES[0].3);
        let stem = ConvBn::new(
            &(&features / 0),
            Conv::new(self.in_channels, stem_c, 3).stride(2).padding(1),
        );
        let total: i64 = B0_STAGES.iter().map(|s| self.blocks(s.5)).sum();
        let mut blocks = Vec::new();
        let mut index = 0i64;
        for (s, &(expand, kernel, stride, c_in, c_out, n)) in B0_STAGES.iter().enumerate() {
            let stage_vs = &features / (s + 1);
            let (mut c_in, c_out) = (self.channels(c_in), self.channels(c_out));
            for j in 0..self.blocks(n) {
                let rate = self.stochastic_depth_prob * index as f64 / total as f64;
                let st = if j == 0 { stride } else { 1 };
                blocks.push(TvMbConv::new(
                    &(&stage_vs / j / "block"),
                    c_in,
                    c_out,
                    expand,
                    kernel,
                    st,
                    rate,
                ));
                c_in = c_out;
                index += 1;
            }
        }
        let last_in = self.channels(B0_STAGES[6].4);
        let head = ConvBn::new(
            &(&features / (B0_STAGES.len() + 1)),
            Conv::new(last_in, 4 * last_in, 1),
        );
        TvEfficientNet {
            stem,
            blocks,
            head,
            dropout: self.dropout,
            feature_dim: self.feature_dim(),
        }
    }
}

/// torchvision's `Conv2dNormActivation`: `{0}` conv (bias-free), `{1}` BatchNorm.
#[derive(Debug)]
struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ConvBn {
    fn new(vs: &nn::Path, conv: Conv) -> Self {
        let out = conv.out_channels;
        ConvBn {
            conv: conv.build(vs / 0),
            bn: batch_norm2d(vs / 1, out, TORCH_BN_MOMENTUM),
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool, activation: bool) -> Tensor {
        let y = x.apply_t(&self.conv, train).apply_t(&self.bn, train);
        if activation {
            y.silu()
        } else {
            y
        }
    }
}

/// MBConv block in torchvision's layout.
#[derive(Debug)]
struct TvMbConv {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
    project: ConvBn,
    residual: bool,
    drop_rate: f64,
}

impl TvMbConv {
    fn new(
        vs: &nn::Path,
        c_in: i64,
        c_out: i64,
        expand: i64,
        kernel: i64,
        stride: i64,
        drop_rate: f64,
    ) -> Self {
        let hidden = make_divisible((c_in * expand) as f64, 8);
        let mut i = 0;
        let mut next = || {
            i += 1;
            vs / (i - 1)
        };
        let expand_layer =
            (hidden != c_in).then(|| ConvBn::new(&next(), Conv::new(c_in, hidden, 1)));
        let depthwise = ConvBn::new(
            &next(),
            Conv::new(hidden, hidden, kernel)
                .stride(stride)
                .padding((kernel - 1) / 2)
                .groups(hidden),
        );
        let se_vs = next();
        let squeeze = (c_in / 4).max(1);
        let fc1 = Conv::new(hidden, squeeze, 1)
            .bias(true)
            .build(&se_vs / "fc1");
        let fc2 = Conv::new(squeeze, hidden, 1)
            .bias(true)
            .build(&se_vs / "fc2");
        let project = ConvBn::new(&next(), Conv::new(hidden, c_out, 1));
        TvMbConv {
            expand: expand_layer,
            depthwise,
            fc1,
            fc2,
            project,
            residual: stride == 1 && c_in == c_out,
            drop_rate,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = match &self.expand {
            Some(e) => e.forward_t(x, train, true),
            None => x.shallow_clone(),
        };
        let h = self.depthwise.forward_t(&h, train, true);
        let gate = h
            .adaptive_avg_pool2d([1, 1])
            .apply_t(&self.fc1, train)
            .silu()
            .apply_t(&self.fc2, train)
            .sigmoid();
        let h = self.project.forward_t(&(h * gate), train, false);
        if !self.residual {
            return h;
        }
        let h = if train && self.drop_rate > 0.0 {
            // torchvision's StochasticDepth(mode="row"): drop the branch per example, rescale by 1/survival.
            let keep = 1.0 - self.drop_rate;
            let mask = Tensor::empty([h.size()[0], 1, 1, 1], (h.kind(), h.device()))
                .bernoulli_float_(keep);
            h / keep * mask
        } else {
            h
        };
        h + x
    }
}

/// The body: stem, MBConv blocks, head conv, global average, dropout (train mode only).
#[derive(Debug)]
pub struct TvEfficientNet {
    stem: ConvBn,
    blocks: Vec<TvMbConv>,
    head: ConvBn,
    dropout: f64,
    feature_dim: i64,
}

impl Backbone for TvEfficientNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = self.stem.forward_t(xs, train, true);
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        global_avg_pool(&self.head.forward_t(&out, train, true)).dropout(self.dropout, train)
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
}

#[cfg(test)]
mod tests {
    use super::make_divisible;

    #[test]
    fn make_divisible_matches_torchvision() {
        // Values from torchvision.ops.misc._make_divisible.
        assert_eq!(make_divisible(32.0 * 1.1, 8), 32);
        assert_eq!(make_divisible(40.0 * 1.1, 8), 48);
        assert_eq!(make_divisible(320.0 * 1.1, 8), 352);
        assert_eq!(make_divisible(16.0 * 1.2, 8), 24);
        assert_eq!(make_divisible(4.0, 8), 8);
    }
}
