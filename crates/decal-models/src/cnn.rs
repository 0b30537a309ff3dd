//! The seed's simple CNN (`src/models/CNN.py`, the PyTorch-tutorial LeNet); seed-system.md §5.2.
//!
//! `conv1` (C→6, 5×5) → ReLU → MaxPool 2 → `conv2` (6→16, 5×5) → ReLU → MaxPool 2 → flatten → `fc1` (→120)
//! → ReLU → `fc2` (120→84) → ReLU = the body (F = 84); `fc3` (84→K) is the classifier head. PyTorch default
//! init everywhere. 62,006 parameters for 3×32×32 input and K = 10. The config also takes the input channels and
//! image size so that a 1×28×28 variant (28→24→12→8→4, 16·4·4 = 256 flattened features) serves
//! MNIST / Fashion-MNIST.

use serde::{Deserialize, Serialize};
use tch::nn;
use tch::Tensor;

use crate::init::{linear, Conv};
use crate::{Backbone, ModelError};

/// Configuration of the simple CNN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// Input channels (3 for CIFAR, 1 for MNIST-like data).
    pub in_channels: i64,
    /// Input height = width in pixels (32 for CIFAR, 28 for MNIST).
    pub image_size: i64,
    /// K, the width of `fc3`.
    pub num_classes: i64,
}

impl CnnConfig {
    /// The seed's CIFAR CNN (3×32×32).
    pub fn cifar(num_classes: i64) -> Self {
        CnnConfig {
            in_channels: 3,
            image_size: 32,
            num_classes,
        }
    }

    /// Side length of the feature map after the second pool: ((s − 4)/2 − 4)/2 (floor, as MaxPool2d).
    pub fn final_map_size(&self) -> i64 {
        ((self.image_size - 4) / 2 - 4) / 2
    }

    /// F = 84.
    pub fn feature_dim(&self) -> i64 {
        84
    }

    /// Checks that the image is large enough for two 5×5 convs and two 2×2 pools.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.in_channels < 1 || self.num_classes < 1 {
            return Err(ModelError::invalid(
                "cnn",
                "in_channels and num_classes must be >= 1",
            ));
        }
        if self.image_size < 14 {
            return Err(ModelError::invalid(
                "cnn",
                format!(
                    "image_size {} is too small (two 5x5 convs and two 2x2 pools need >= 14)",
                    self.image_size
                ),
            ));
        }
        Ok(())
    }

    /// Registers the body's variables (`conv1`, `conv2`, `fc1`, `fc2`) under `vs`.
    pub fn build_body(&self, vs: &nn::Path) -> SimpleCnn {
        let flat = 16 * self.final_map_size() * self.final_map_size();
        SimpleCnn {
            conv1: Conv::new(self.in_channels, 6, 5)
                .bias(true)
                .build(vs / "conv1"),
            conv2: Conv::new(6, 16, 5).bias(true).build(vs / "conv2"),
            fc1: linear(vs / "fc1", flat, 120),
            fc2: linear(vs / "fc2", 120, 84),
        }
    }
}

/// The CNN body (everything up to ReLU(fc2)).
#[derive(Debug)]
pub struct SimpleCnn {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Backbone for SimpleCnn {
    fn features(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply_t(&self.conv1, train)
            .relu()
            .max_pool2d_default(2)
            .apply_t(&self.conv2, train)
            .relu()
            .max_pool2d_default(2)
            .flatten(1, -1)
            .apply_t(&self.fc1, train)
            .relu()
            .apply_t(&self.fc2, train)
            .relu()
    }

    fn feature_dim(&self) -> i64 {
        84
    }
}
