//! CIFAR EfficientNets in the kuangliu style used by the seed (`src/models/EfficientNet_new.py`);
//! seed-system.md §5.4.
//!
//! Stem: 3×3 conv (3→32, stride 1, padding 1, no bias) → BN → swish. Then MBConv blocks
//! (expansion 1×1 conv + BN + swish, depthwise k×k conv + BN + swish, squeeze-excitation with swish and a
//! sigmoid gate, projection 1×1 conv + BN, residual when stride 1 and in = out), global average, and
//! dropout before the `linear` classifier. The dropout is part of the **body** here, as in the seed's
//! `EfficientNetB5Body`: features in train mode are dropped out, in eval mode they are not.
//!
//! The seed's "EfficientNet-B5" ([`EfficientNetConfig::b5_seed`]) keeps its quirks so its checkpoints load
//! and its numbers replicate (**BUG-12**, §15):
//! - `conv1`/`bn1` of a block are allocated even when the expansion ratio is 1 (then unused); they count
//!   towards the 33,299,362 parameters;
//! - drop-connect is effectively off: the seed computes `0.2 · b / 38` but never increments `b`, so every
//!   block has rate 0 — the preset therefore sets `drop_connect_rate = 0.0`; a non-zero rate here gives block
//!   `i` the rate `drop_connect_rate · i / num_blocks`, as the seed intended;
//! - there is no 1×1 "head conv" to 1280 channels, so it is not a real EfficientNet-B5: F = 640.
//!
//! Variable names equal the PyTorch state_dict keys: `conv1`, `bn1`, `layers.{i}.{conv1,bn1,conv2,bn2,
//! se.se1,se.se2,conv3,bn3}`, `linear`.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::init::{batch_norm2d, global_avg_pool, Conv};
use crate::resnet::TORCH_BN_MOMENTUM;
use crate::{Backbone, ModelError};

/// One stage: `num_blocks` MBConv blocks, the first with `stride`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetStage {
    /// Expansion ratio of the inverted bottleneck (1 = no expansion conv in the forward pass).
    pub expansion: i64,
    /// Output channels of every block of the stage.
    pub out_channels: i64,
    /// Number of blocks.
    pub num_blocks: i64,
    /// Depthwise kernel size, 3 or 5 (padding 1 or 2).
    pub kernel_size: i64,
    /// Stride of the first block.
    pub stride: i64,
}

/// Configuration of a kuangliu-style CIFAR EfficientNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EfficientNetConfig {
    /// Stem output channels (32 in the seed).
    pub stem_channels: i64,
    /// The stages in order.
    pub stages: Vec<EfficientNetStage>,
    /// SE bottleneck ratio relative to the block's **input** channels (`int(in · se_ratio)`), 0.25.
    pub se_ratio: f64,
    /// Dropout probability applied to the pooled features in train mode (0.4 for the seed's B5).
    pub dropout_rate: f64,
    /// Maximum drop-connect (stochastic depth) rate; block `i` of `n` uses `rate · i / n`. 0 in the seed (BUG-12).
    pub drop_connect_rate: f64,
    /// Input channels.
    pub in_channels: i64,
    /// K, the width of `linear`.
    pub num_classes: i64,
}

fn stage(
    expansion: i64,
    out_channels: i64,
    num_blocks: i64,
    kernel_size: i64,
    stride: i64,
) -> EfficientNetStage {
    EfficientNetStage {
        expansion,
        out_channels,
        num_blocks,
        kernel_size,
        stride,
    }
}

impl EfficientNetConfig {
    /// The seed's CIFAR "EfficientNet-B5" (`EfficientNetB5` in EfficientNet_new.py): 38 blocks, F = 640,
    /// dropout 0.4, drop-connect 0 (BUG-12). 33,299,362 parameters for K = 10.
    pub fn b5_seed(num_classes: i64) -> Self {
        EfficientNetConfig {
            stem_channels: 32,
            stages: vec![
                stage(1, 32, 3, 3, 1),
                stage(6, 48, 4, 3, 2),
                stage(6, 80, 6, 5, 2),
                stage(6, 160, 6, 3, 2),
                stage(6, 224, 8, 5, 1),
                stage(6, 384, 10, 5, 2),
                stage(6, 640, 1, 3, 1),
            ],
            se_ratio: 0.25,
            dropout_rate: 0.4,
            drop_connect_rate: 0.0,
            in_channels: 3,
            num_classes,
        }
    }

    /// kuangliu's CIFAR `EfficientNetB0` table (stages of the real B0: 16/24/40/80/112/192/320 channels),
    /// with dropout 0.2 and drop-connect 0.2 applied as intended (the rate grows linearly with block index).
    pub fn b0_cifar(num_classes: i64) -> Self {
        EfficientNetConfig {
            stem_channels: 32,
            stages: vec![
                stage(1, 16, 1, 3, 1),
                stage(6, 24, 2, 3, 2),
                stage(6, 40, 2, 5, 2),
                stage(6, 80, 3, 3, 2),
                stage(6, 112, 3, 5, 1),
                stage(6, 192, 4, 5, 2),
                stage(6, 320, 1, 3, 1),
            ],
            se_ratio: 0.25,
            dropout_rate: 0.2,
            drop_connect_rate: 0.2,
            in_channels: 3,
            num_classes,
        }
    }

    /// F = output channels of the last stage.
    pub fn feature_dim(&self) -> i64 {
        self.stages
            .last()
            .map_or(self.stem_channels, |s| s.out_channels)
    }

    /// Checks stage parameters and rates.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |p: String| Err(ModelError::invalid("efficientnet", p));
        if self.stages.is_empty() {
            return bad("at least one stage is required".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.expansion < 1 || s.out_channels < 1 || s.num_blocks < 1 || s.stride < 1 {
                return bad(format!(
                    "stage {i}: expansion, out_channels, num_blocks and stride must be >= 1"
                ));
            }
            if s.kernel_size != 3 && s.kernel_size != 5 {
                return bad(format!(
                    "stage {i}: kernel_size {} must be 3 or 5",
                    s.kernel_size
                ));
            }
        }
        if !(0.0..1.0).contains(&self.dropout_rate) || !(0.0..1.0).contains(&self.drop_connect_rate)
        {
            return bad("dropout_rate and drop_connect_rate must lie in [0, 1)".into());
        }
        if self.se_ratio.is_nan() || self.se_ratio <= 0.0 || self.se_ratio > 1.0 {
            return bad(format!("se_ratio {} must lie in (0, 1]", self.se_ratio));
        }
        if self.in_channels < 1 || self.stem_channels < 1 || self.num_classes < 1 {
            return bad("in_channels, stem_channels and num_classes must be >= 1".into());
        }
        Ok(())
    }

    /// Registers the body's variables under `vs`.
    pub fn build_body(&self, vs: &nn::Path) -> EfficientNet {
        let conv1 = Conv::new(self.in_channels, self.stem_channels, 3)
            .padding(1)
            .build(vs / "conv1");
        let bn1 = batch_norm2d(vs / "bn1", self.stem_channels, TORCH_BN_MOMENTUM);
        let total: i64 = self.stages.iter().map(|s| s.num_blocks).sum();
        let layers_vs = vs / "layers";
        let mut blocks = Vec::new();
        let mut in_channels = self.stem_channels;
        for s in &self.stages {
            for j in 0..s.num_blocks {
                let idx = blocks.len() as i64;
                let drop_rate = self.drop_connect_rate * idx as f64 / total as f64;
                let stride = if j == 0 { s.stride } else { 1 };
                blocks.push(MbConv::new(
                    &(&layers_vs / idx),
                    in_channels,
                    s,
                    stride,
                    self.se_ratio,
                    drop_rate,
                ));
                in_channels = s.out_channels;
            }
        }
        EfficientNet {
            conv1,
            bn1,
            blocks,
            dropout_rate: self.dropout_rate,
            feature_dim: self.feature_dim(),
        }
    }
}

/// `x · sigmoid(x)`.
fn swish(x: &Tensor) -> Tensor {
    x.silu()
}

/// Inverted-residual block with squeeze-excitation (`Block` in the seed).
#[derive(Debug)]
struct MbConv {
    expand: i64,
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    se1: nn::Conv2D,
    se2: nn::Conv2D,
    conv3: nn::Conv2D,
    bn3: nn::BatchNorm,
    has_skip: bool,
    drop_rate: f64,
}

impl MbConv {
    fn new(
        vs: &nn::Path,
        in_c: i64,
        s: &EfficientNetStage,
        stride: i64,
        se_ratio: f64,
        drop_rate: f64,
    ) -> Self {
        let channels = s.expansion * in_c;
        // Python's int() truncates toward zero; the value is positive.
        let se_channels = ((in_c as f64 * se_ratio) as i64).max(1);
        let padding = if s.kernel_size == 3 { 1 } else { 2 };
        MbConv {
            expand: s.expansion,
            // Allocated even for expansion 1 (then unused), as the seed does: the weights exist in its checkpoints.
            conv1: Conv::new(in_c, channels, 1).build(vs / "conv1"),
            bn1: batch_norm2d(vs / "bn1", channels, TORCH_BN_MOMENTUM),
            conv2: Conv::new(channels, channels, s.kernel_size)
                .stride(stride)
                .padding(padding)
                .groups(channels)
                .build(vs / "conv2"),
            bn2: batch_norm2d(vs / "bn2", channels, TORCH_BN_MOMENTUM),
            se1: Conv::new(channels, se_channels, 1)
                .bias(true)
                .build(vs / "se" / "se1"),
            se2: Conv::new(se_channels, channels, 1)
                .bias(true)
                .build(vs / "se" / "se2"),
            conv3: Conv::new(channels, s.out_channels, 1).build(vs / "conv3"),
            bn3: batch_norm2d(vs / "bn3", s.out_channels, TORCH_BN_MOMENTUM),
            has_skip: stride == 1 && in_c == s.out_channels,
            drop_rate,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let h = if self.expand == 1 {
            x.shallow_clone()
        } else {
            swish(&x.apply_t(&self.conv1, train).apply_t(&self.bn1, train))
        };
        let h = swish(&h.apply_t(&self.conv2, train).apply_t(&self.bn2, train));
        let gate = swish(&h.adaptive_avg_pool2d([1, 1]).apply_t(&self.se1, train))
            .apply_t(&self.se2, train)
            .sigmoid();
        let h = (h * gate)
            .apply_t(&self.conv3, train)
            .apply_t(&self.bn3, train);
        if !self.has_skip {
            return h;
        }
        let h = if train && self.drop_rate > 0.0 {
            // Drop-connect: drop the whole residual branch per example with probability drop_rate and rescale.
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

/// The EfficientNet body: stem, blocks, global average, dropout (train mode only).
#[derive(Debug)]
pub struct EfficientNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<MbConv>,
    dropout_rate: f64,
    feature_dim: i64,
}

impl Backbone for EfficientNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = swish(&xs.apply_t(&self.conv1, train).apply_t(&self.bn1, train));
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        global_avg_pool(&out).dropout(self.dropout_rate, train)
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
}
