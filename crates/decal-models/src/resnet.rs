//! CIFAR ResNets as in the seed (`src/models/ResNet_new.py`, from kuangliu/pytorch-cifar); seed-system.md §5.3.
//!
//! Stem: 3×3 conv (3→64, stride 1, padding 1, no bias) → BN → ReLU — no 7×7 conv and no max-pool.
//! Four stages of BasicBlocks (ResNet-18/34) or Bottlenecks (ResNet-50/101/152, expansion 4, stride on the
//! 3×3 conv) with 64/128/256/512 planes and first strides 1/2/2/2. A projection shortcut (1×1 conv + BN)
//! appears when the stride is not 1 or the channel count changes. Body output: global average of `layer4`
//! (the seed's `avg_pool2d(4)` on the 4×4 map of a 32×32 input), F = 512·expansion (2048 for ResNet-50).
//! All convs bias-free, BN momentum 0.1, PyTorch default init. ResNet-50 with K = 10 has 23,520,842 parameters.
//!
//! Variable names equal the PyTorch state_dict keys: `conv1`, `bn1`, `layer{1..4}.{i}.{conv1,bn1,conv2,bn2,
//! conv3,bn3,shortcut.0,shortcut.1}`, `linear`.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::init::{batch_norm2d, global_avg_pool, Conv};
use crate::{Backbone, ModelError};

/// PyTorch's default BatchNorm momentum, used by the seed's ResNet and EfficientNet.
pub const TORCH_BN_MOMENTUM: f64 = 0.1;

fn default_base_width() -> i64 {
    64
}

/// Residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResNetBlock {
    /// Two 3×3 convs, expansion 1 (ResNet-18/34).
    Basic,
    /// 1×1 → 3×3 → 1×1 convs, expansion 4 (ResNet-50/101/152).
    Bottleneck,
}

impl ResNetBlock {
    /// Output channels per plane.
    pub fn expansion(self) -> i64 {
        match self {
            ResNetBlock::Basic => 1,
            ResNetBlock::Bottleneck => 4,
        }
    }
}

/// Configuration of a CIFAR ResNet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Block type.
    pub block: ResNetBlock,
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    pub num_blocks: [i64; 4],
    /// Planes of the stem and the first stage; stages use 1, 2, 4, 8 times this (64 in the seed and in every
    /// preset; smaller values give narrow test models).
    #[serde(default = "default_base_width")]
    pub base_width: i64,
    /// Input channels.
    pub in_channels: i64,
    /// K, the width of `linear`.
    pub num_classes: i64,
}

impl ResNetConfig {
    /// ResNet-18 (BasicBlock, [2, 2, 2, 2]).
    pub fn resnet18(num_classes: i64) -> Self {
        ResNetConfig {
            block: ResNetBlock::Basic,
            num_blocks: [2, 2, 2, 2],
            base_width: 64,
            in_channels: 3,
            num_classes,
        }
    }

    /// ResNet-34 (BasicBlock, [3, 4, 6, 3]).
    pub fn resnet34(num_classes: i64) -> Self {
        ResNetConfig {
            block: ResNetBlock::Basic,
            num_blocks: [3, 4, 6, 3],
            base_width: 64,
            in_channels: 3,
            num_classes,
        }
    }

    /// ResNet-50 (Bottleneck, [3, 4, 6, 3]), the seed's.
    pub fn resnet50(num_classes: i64) -> Self {
        ResNetConfig {
            block: ResNetBlock::Bottleneck,
            num_blocks: [3, 4, 6, 3],
            base_width: 64,
            in_channels: 3,
            num_classes,
        }
    }

    /// F = 8·base_width·expansion (2048 for ResNet-50).
    pub fn feature_dim(&self) -> i64 {
        8 * self.base_width * self.block.expansion()
    }

    /// Checks block counts and channel numbers.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.num_blocks.iter().any(|&n| n < 1) {
            return Err(ModelError::invalid(
                "resnet",
                format!("num_blocks {:?} must all be >= 1", self.num_blocks),
            ));
        }
        if self.in_channels < 1 || self.num_classes < 1 || self.base_width < 1 {
            return Err(ModelError::invalid(
                "resnet",
                "in_channels, base_width and num_classes must be >= 1",
            ));
        }
        Ok(())
    }

    /// Registers the body's variables under `vs`.
    pub fn build_body(&self, vs: &nn::Path) -> ResNet {
        let expansion = self.block.expansion();
        let w = self.base_width;
        let conv1 = Conv::new(self.in_channels, w, 3)
            .padding(1)
            .build(vs / "conv1");
        let bn1 = batch_norm2d(vs / "bn1", w, TORCH_BN_MOMENTUM);
        let mut in_planes = w;
        let mut blocks = Vec::new();
        for (stage, (&planes, &first_stride)) in [w, 2 * w, 4 * w, 8 * w]
            .iter()
            .zip(&[1i64, 2, 2, 2])
            .enumerate()
        {
            let stage_vs = vs / format!("layer{}", stage + 1);
            for i in 0..self.num_blocks[stage] {
                let stride = if i == 0 { first_stride } else { 1 };
                blocks.push(ResBlock::new(
                    &(&stage_vs / i),
                    self.block,
                    in_planes,
                    planes,
                    stride,
                ));
                in_planes = planes * expansion;
            }
        }
        ResNet {
            conv1,
            bn1,
            blocks,
            feature_dim: self.feature_dim(),
        }
    }
}

/// A BasicBlock or Bottleneck.
#[derive(Debug)]
struct ResBlock {
    /// (conv, bn) pairs in order; a ReLU follows every pair but the last.
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    shortcut: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl ResBlock {
    fn new(vs: &nn::Path, kind: ResNetBlock, in_planes: i64, planes: i64, stride: i64) -> Self {
        let out = planes * kind.expansion();
        let bn = |name: &str, c| batch_norm2d(vs / name, c, TORCH_BN_MOMENTUM);
        let convs = match kind {
            ResNetBlock::Basic => vec![
                (
                    Conv::new(in_planes, planes, 3)
                        .stride(stride)
                        .padding(1)
                        .build(vs / "conv1"),
                    bn("bn1", planes),
                ),
                (
                    Conv::new(planes, planes, 3).padding(1).build(vs / "conv2"),
                    bn("bn2", planes),
                ),
            ],
            ResNetBlock::Bottleneck => vec![
                (
                    Conv::new(in_planes, planes, 1).build(vs / "conv1"),
                    bn("bn1", planes),
                ),
                (
                    Conv::new(planes, planes, 3)
                        .stride(stride)
                        .padding(1)
                        .build(vs / "conv2"),
                    bn("bn2", planes),
                ),
                (
                    Conv::new(planes, out, 1).build(vs / "conv3"),
                    bn("bn3", out),
                ),
            ],
        };
        let shortcut = (stride != 1 || in_planes != out).then(|| {
            let sc = vs / "shortcut";
            (
                Conv::new(in_planes, out, 1).stride(stride).build(&sc / 0),
                batch_norm2d(&sc / 1, out, TORCH_BN_MOMENTUM),
            )
        });
        ResBlock { convs, shortcut }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut out = x.shallow_clone();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            out = out.apply_t(conv, train).apply_t(bn, train);
            if i != last {
                out = out.relu();
            }
        }
        let short = match &self.shortcut {
            Some((conv, bn)) => x.apply_t(conv, train).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

/// The ResNet body.
#[derive(Debug)]
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    blocks: Vec<ResBlock>,
    feature_dim: i64,
}

impl Backbone for ResNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = xs
            .apply_t(&self.conv1, train)
            .apply_t(&self.bn1, train)
            .relu();
        for block in &self.blocks {
            out = block.forward_t(&out, train);
        }
        global_avg_pool(&out)
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
}
