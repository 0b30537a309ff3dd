//! Wide-ResNet as in the seed (`src/models/WRN.py`, from DeepMind's adversarial_robustness model zoo,
//! Gowal et al. 2020); seed-system.md §5.1.
//!
//! Pre-activation blocks without dropout; BatchNorm momentum 0.01; a stride-2 `conv_0` is preceded by the
//! asymmetric TensorFlow-"SAME" padding (left 0, right 1, top 0, bottom 1) and uses padding 0 itself; the
//! shortcut (a bias-free 1×1 conv, present iff in ≠ out channels) sees the **pre-activated** input, the
//! identity path the raw input. Every conv weight ~ N(0, √(2 / (k²·out))), BN weight 1 / bias 0, the
//! `logits` Linear keeps PyTorch's default weight init and gets a zero bias.
//!
//! Variable names equal the PyTorch state_dict keys: `init_conv.weight`,
//! `layer.{g}.block.{b}.{batchnorm_0,conv_0,batchnorm_1,conv_1,shortcut}.*`, `batchnorm.*`, `logits.*`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

use crate::init::{batch_norm2d, global_avg_pool, Conv};
use crate::{Backbone, ModelError};

/// BatchNorm momentum of every WRN BatchNorm (PyTorch convention), seed-system.md §5.1.
pub const WRN_BN_MOMENTUM: f64 = 0.01;

/// Configuration of a Wide-ResNet-`depth`-`width`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WideResNetConfig {
    /// Number of layers; `(depth − 4)` must be a positive multiple of 6 (blocks per group = (depth − 4)/6).
    pub depth: i64,
    /// Widening factor: channels are `[16, 16·width, 32·width, 64·width]`.
    pub width: i64,
    /// Input channels (3 for CIFAR/SVHN, 1 for MNIST-like data).
    pub num_input_channels: i64,
    /// K, the width of the `logits` layer.
    pub num_classes: i64,
}

impl WideResNetConfig {
    /// The seed's WRN-28-10 (36,479,194 parameters for K = 10).
    pub fn wrn_28_10(num_classes: i64) -> Self {
        WideResNetConfig {
            depth: 28,
            width: 10,
            num_input_channels: 3,
            num_classes,
        }
    }

    /// Channel widths `[16, 16w, 32w, 64w]`.
    pub fn channels(&self) -> [i64; 4] {
        [16, 16 * self.width, 32 * self.width, 64 * self.width]
    }

    /// F = 64·width (640 for WRN-28-10).
    pub fn feature_dim(&self) -> i64 {
        64 * self.width
    }

    /// Checks the ranges the seed's constructor asserts.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.depth < 10 || (self.depth - 4) % 6 != 0 {
            return Err(ModelError::invalid(
                "wide-resnet",
                format!(
                    "depth {} must satisfy (depth - 4) % 6 == 0 and depth >= 10",
                    self.depth
                ),
            ));
        }
        if self.width < 1 {
            return Err(ModelError::invalid(
                "wide-resnet",
                format!("width {} must be >= 1", self.width),
            ));
        }
        if self.num_input_channels < 1 || self.num_classes < 1 {
            return Err(ModelError::invalid(
                "wide-resnet",
                "num_input_channels and num_classes must be >= 1",
            ));
        }
        Ok(())
    }

    /// Registers the body's variables under `vs` (names as the seed's state_dict) and returns it.
    pub fn build_body(&self, vs: &nn::Path) -> WideResNet {
        let ch = self.channels();
        let blocks_per_group = (self.depth - 4) / 6;
        let init_conv = Conv::new(self.num_input_channels, ch[0], 3)
            .padding(1)
            .build_with(vs / "init_conv", wrn_conv_init(3, ch[0]));
        let mut groups = Vec::new();
        for (g, &(c_in, c_out, stride)) in [(ch[0], ch[1], 1), (ch[1], ch[2], 2), (ch[2], ch[3], 2)]
            .iter()
            .enumerate()
        {
            let group_vs = vs / "layer" / g / "block";
            let blocks = (0..blocks_per_group)
                .map(|b| {
                    let (i, s) = if b == 0 { (c_in, stride) } else { (c_out, 1) };
                    WrnBlock::new(&(&group_vs / b), i, c_out, s)
                })
                .collect();
            groups.push(blocks);
        }
        let batchnorm = batch_norm2d(vs / "batchnorm", ch[3], WRN_BN_MOMENTUM);
        WideResNet {
            init_conv,
            groups,
            batchnorm,
            feature_dim: ch[3],
        }
    }
}

/// `N(0, √(2 / (k²·out)))`, the seed's conv init (He et al. 2015, fan-out).
fn wrn_conv_init(kernel: i64, out_channels: i64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / (kernel * kernel * out_channels) as f64).sqrt(),
    }
}

/// One pre-activation block (`_Block` in the seed).
#[derive(Debug)]
struct WrnBlock {
    batchnorm_0: nn::BatchNorm,
    conv_0: nn::Conv2D,
    batchnorm_1: nn::BatchNorm,
    conv_1: nn::Conv2D,
    shortcut: Option<nn::Conv2D>,
    stride: i64,
}

impl WrnBlock {
    fn new(vs: &nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let shortcut = (c_in != c_out).then(|| {
            Conv::new(c_in, c_out, 1)
                .stride(stride)
                .build_with(vs / "shortcut", wrn_conv_init(1, c_out))
        });
        WrnBlock {
            batchnorm_0: batch_norm2d(vs / "batchnorm_0", c_in, WRN_BN_MOMENTUM),
            // Padding 0 here: the block pads manually (symmetric for stride 1, TF-"SAME" for stride 2).
            conv_0: Conv::new(c_in, c_out, 3)
                .stride(stride)
                .build_with(vs / "conv_0", wrn_conv_init(3, c_out)),
            batchnorm_1: batch_norm2d(vs / "batchnorm_1", c_out, WRN_BN_MOMENTUM),
            conv_1: Conv::new(c_out, c_out, 3)
                .padding(1)
                .build_with(vs / "conv_1", wrn_conv_init(3, c_out)),
            shortcut,
            stride,
        }
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let pre = x.apply_t(&self.batchnorm_0, train).relu();
        // F.pad order is (left, right, top, bottom); stride 2 pads right/bottom only (TF "SAME").
        let padded = if self.stride == 1 {
            pre.constant_pad_nd([1, 1, 1, 1])
        } else {
            pre.constant_pad_nd([0, 1, 0, 1])
        };
        let out = padded
            .apply_t(&self.conv_0, train)
            .apply_t(&self.batchnorm_1, train)
            .relu()
            .apply_t(&self.conv_1, train);
        match &self.shortcut {
            // The projection shortcut sees the pre-activated input (seed quirk, faithful to DeepMind's code).
            Some(sc) => pre.apply_t(sc, train) + out,
            None => x + out,
        }
    }
}

/// The WRN body: everything up to the 640-d (for width 10) global average.
#[derive(Debug)]
pub struct WideResNet {
    init_conv: nn::Conv2D,
    groups: Vec<Vec<WrnBlock>>,
    batchnorm: nn::BatchNorm,
    feature_dim: i64,
}

impl Backbone for WideResNet {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut out = xs.apply_t(&self.init_conv, train);
        for block in self.groups.iter().flatten() {
            out = block.forward_t(&out, train);
        }
        // The seed uses avg_pool2d(8) (7 for 1-channel 28×28 input) on the final map, which is 8×8 (7×7)
        // for every input size the seed accepts; a global mean is identical there and also defined elsewhere.
        global_avg_pool(&out.apply_t(&self.batchnorm, train).relu())
    }

    fn feature_dim(&self) -> i64 {
        self.feature_dim
    }
}
