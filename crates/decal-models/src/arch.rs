//! Architecture configs: one serde-tagged enum over the backbone families, named presets, and the builders.
//!
//! An [`ArchConfig`] fully determines a classifier's variables (names and shapes), so a checkpoint's
//! `config.json` plus its weights file is self-describing (seed-system.md §3.3: the seed's checkpoints are not,
//! they pickle the module). The classifier head is `Linear(F → K)` registered under the name the seed's
//! PyTorch module uses for its last layer (`logits`, `fc3`, `linear`, `classifier`), so that importing a
//! PyTorch state_dict is a pure name mapping.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};

use crate::cnn::CnnConfig;
use crate::efficientnet::EfficientNetConfig;
use crate::efficientnet_tv::TvEfficientNetConfig;
use crate::init::{linear, linear_with};
use crate::resnet::ResNetConfig;
use crate::vit::{VitConfig, VIT_INIT_STD};
use crate::wrn::WideResNetConfig;
use crate::{Backbone, Classifier, ModelError};

/// Architecture of a classifier: backbone family + its configuration (including K).
///
/// Serialised with an `arch` tag, e.g. `{"arch": "wide_resnet", "depth": 28, "width": 10, …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "snake_case")]
pub enum ArchConfig {
    /// Wide-ResNet (seed §5.1).
    #[serde(rename = "wide_resnet")]
    WideResNet(WideResNetConfig),
    /// The seed's LeNet-style CNN (§5.2).
    Cnn(CnnConfig),
    /// CIFAR ResNet-18/34/50/… (§5.3).
    #[serde(rename = "resnet")]
    ResNet(ResNetConfig),
    /// kuangliu-style CIFAR EfficientNet, incl. the seed's "B5" (§5.4).
    #[serde(rename = "efficientnet")]
    EfficientNet(EfficientNetConfig),
    /// The real EfficientNet-B0…B7 in torchvision's layout.
    #[serde(rename = "efficientnet_torchvision")]
    TvEfficientNet(TvEfficientNetConfig),
    /// Vision Transformer in HF layout (§5.5).
    Vit(VitConfig),
}

/// Names accepted by [`ArchConfig::preset`], with a one-line description each.
pub const PRESETS: &[(&str, &str)] = &[
    (
        "wrn-28-10",
        "the seed's Wide-ResNet-28-10 (F=640, 36.5M params)",
    ),
    ("wrn-16-4", "Wide-ResNet-16-4 (F=256, 2.7M params)"),
    ("wrn-10-1", "Wide-ResNet-10-1 for quick CPU runs (F=64)"),
    (
        "cnn",
        "the seed's LeNet-style CNN for 3x32x32 input (F=84, 62k params)",
    ),
    (
        "cnn-mnist",
        "the same CNN for 1x28x28 input (MNIST / Fashion-MNIST)",
    ),
    ("resnet18", "CIFAR ResNet-18 (F=512)"),
    ("resnet34", "CIFAR ResNet-34 (F=512)"),
    (
        "resnet50",
        "the seed's CIFAR ResNet-50 (F=2048, 23.5M params)",
    ),
    (
        "efficientnet-b5-seed",
        "the seed's CIFAR \"EfficientNet-B5\" (F=640, 33.3M params; BUG-12 quirks kept)",
    ),
    (
        "efficientnet-b0",
        "kuangliu's CIFAR EfficientNet-B0 (F=320)",
    ),
    (
        "vit-b16",
        "ViT-B/16 at 224x224, HF layout (F=768, 86M params)",
    ),
    (
        "vit-tiny",
        "ViT-Tiny shape with 4x4 patches for 32x32 input (F=192)",
    ),
];

impl ArchConfig {
    /// The preset called `name` with `num_classes` outputs. `wrn-<depth>-<width>` is accepted for any valid
    /// depth and width. Unknown names give an error listing the known presets.
    pub fn preset(name: &str, num_classes: i64) -> Result<ArchConfig, ModelError> {
        let cfg = match name {
            "cnn" => ArchConfig::Cnn(CnnConfig::cifar(num_classes)),
            "cnn-mnist" => ArchConfig::Cnn(CnnConfig {
                in_channels: 1,
                image_size: 28,
                num_classes,
            }),
            "resnet18" => ArchConfig::ResNet(ResNetConfig::resnet18(num_classes)),
            "resnet34" => ArchConfig::ResNet(ResNetConfig::resnet34(num_classes)),
            "resnet50" => ArchConfig::ResNet(ResNetConfig::resnet50(num_classes)),
            "efficientnet-b5-seed" => {
                ArchConfig::EfficientNet(EfficientNetConfig::b5_seed(num_classes))
            }
            "efficientnet-b0-cifar" => {
                ArchConfig::EfficientNet(EfficientNetConfig::b0_cifar(num_classes))
            }
            "vit-b16" => ArchConfig::Vit(VitConfig::b16(num_classes)),
            "vit-tiny" => ArchConfig::Vit(VitConfig::tiny_32(num_classes)),
            other => {
                if let Some((depth, width)) = parse_wrn(other) {
                    ArchConfig::WideResNet(WideResNetConfig {
                        depth,
                        width,
                        num_input_channels: 3,
                        num_classes,
                    })
                } else if let Some(variant) = other
                    .strip_prefix("efficientnet-b")
                    .filter(|v| v.len() == 1)
                    .and_then(|v| v.parse::<usize>().ok())
                {
                    ArchConfig::TvEfficientNet(
                        TvEfficientNetConfig::b(variant, num_classes)
                            .ok_or_else(|| unknown(name))?,
                    )
                } else {
                    return Err(unknown(name));
                }
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Short family name (`wide_resnet`, `cnn`, `resnet`, `efficientnet`, `vit`), as in the serde tag.
    pub fn family(&self) -> &'static str {
        match self {
            ArchConfig::WideResNet(_) => "wide_resnet",
            ArchConfig::Cnn(_) => "cnn",
            ArchConfig::ResNet(_) => "resnet",
            ArchConfig::EfficientNet(_) => "efficientnet",
            ArchConfig::TvEfficientNet(_) => "efficientnet_torchvision",
            ArchConfig::Vit(_) => "vit",
        }
    }

    /// K.
    pub fn num_classes(&self) -> i64 {
        match self {
            ArchConfig::WideResNet(c) => c.num_classes,
            ArchConfig::Cnn(c) => c.num_classes,
            ArchConfig::ResNet(c) => c.num_classes,
            ArchConfig::EfficientNet(c) => c.num_classes,
            ArchConfig::TvEfficientNet(c) => c.num_classes,
            ArchConfig::Vit(c) => c.num_classes,
        }
    }

    /// The same architecture with another K.
    pub fn with_num_classes(&self, num_classes: i64) -> ArchConfig {
        let mut cfg = self.clone();
        match &mut cfg {
            ArchConfig::WideResNet(c) => c.num_classes = num_classes,
            ArchConfig::Cnn(c) => c.num_classes = num_classes,
            ArchConfig::ResNet(c) => c.num_classes = num_classes,
            ArchConfig::EfficientNet(c) => c.num_classes = num_classes,
            ArchConfig::TvEfficientNet(c) => c.num_classes = num_classes,
            ArchConfig::Vit(c) => c.num_classes = num_classes,
        }
        cfg
    }

    /// F, the width of the body's feature vector.
    pub fn feature_dim(&self) -> i64 {
        match self {
            ArchConfig::WideResNet(c) => c.feature_dim(),
            ArchConfig::Cnn(c) => c.feature_dim(),
            ArchConfig::ResNet(c) => c.feature_dim(),
            ArchConfig::EfficientNet(c) => c.feature_dim(),
            ArchConfig::TvEfficientNet(c) => c.feature_dim(),
            ArchConfig::Vit(c) => c.feature_dim(),
        }
    }

    /// Input `[C, H, W]` the architecture expects (`None` for H/W = any size the convs accept).
    pub fn input_shape(&self) -> (i64, Option<i64>) {
        match self {
            ArchConfig::WideResNet(c) => (c.num_input_channels, None),
            ArchConfig::Cnn(c) => (c.in_channels, Some(c.image_size)),
            ArchConfig::ResNet(c) => (c.in_channels, None),
            ArchConfig::EfficientNet(c) => (c.in_channels, None),
            ArchConfig::TvEfficientNet(c) => (c.in_channels, None),
            ArchConfig::Vit(c) => (c.num_channels, Some(c.image_size)),
        }
    }

    /// Checks that images `[N, C, H, W]` (or `[C, H, W]`) fit this architecture, so a dataset/model mismatch is
    /// a clear error before any forward pass (libtorch would abort the pass with a shape message instead).
    /// CNN and ViT need their exact configured size; the convolutional families need at least one pixel left
    /// after their downsampling (WRN 4, ResNet 8, seed EfficientNet 16, torchvision EfficientNet 32).
    pub fn check_input_shape(&self, shape: &[i64]) -> Result<(), ModelError> {
        let chw = match shape {
            [_, c, h, w] | [c, h, w] => [*c, *h, *w],
            _ => {
                return Err(ModelError::invalid(
                    self.family(),
                    format!("input shape {shape:?} is not [N, C, H, W] or [C, H, W]"),
                ))
            }
        };
        let (channels, exact) = self.input_shape();
        if chw[0] != channels {
            return Err(ModelError::invalid(
                self.family(),
                format!(
                    "the model takes {channels}-channel images, the input has {} channels",
                    chw[0]
                ),
            ));
        }
        if let Some(size) = exact {
            if chw[1] != size || chw[2] != size {
                return Err(ModelError::invalid(
                    self.family(),
                    format!("the model takes {size}x{size} images, the input is {}x{} (resize it first)", chw[1], chw[2]),
                ));
            }
            return Ok(());
        }
        let min = match self {
            ArchConfig::WideResNet(_) => 4,
            ArchConfig::ResNet(_) => 8,
            ArchConfig::EfficientNet(_) => 16,
            _ => 32,
        };
        if chw[1] < min || chw[2] < min {
            return Err(ModelError::invalid(
                self.family(),
                format!(
                    "images of {}x{} are too small (at least {min}x{min})",
                    chw[1], chw[2]
                ),
            ));
        }
        Ok(())
    }

    /// Name of the classifier head's variables (the last layer of the seed's PyTorch module).
    pub fn head_name(&self) -> &'static str {
        match self {
            ArchConfig::WideResNet(_) => "logits",
            ArchConfig::Cnn(_) => "fc3",
            ArchConfig::ResNet(_) | ArchConfig::EfficientNet(_) => "linear",
            ArchConfig::Vit(_) => "classifier",
            ArchConfig::TvEfficientNet(_) => "classifier.1",
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self {
            ArchConfig::WideResNet(c) => c.validate(),
            ArchConfig::Cnn(c) => c.validate(),
            ArchConfig::ResNet(c) => c.validate(),
            ArchConfig::EfficientNet(c) => c.validate(),
            ArchConfig::TvEfficientNet(c) => c.validate(),
            ArchConfig::Vit(c) => c.validate(),
        }
    }
}

fn unknown(name: &str) -> ModelError {
    ModelError::UnknownPreset {
        name: name.to_string(),
        known: PRESETS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
            + " (and wrn-<depth>-<width>, efficientnet-b0 ... efficientnet-b7)",
    }
}

/// `wrn-<depth>-<width>` → (depth, width).
fn parse_wrn(name: &str) -> Option<(i64, i64)> {
    let rest = name.strip_prefix("wrn-")?;
    let (depth, width) = rest.split_once('-')?;
    Some((depth.parse().ok()?, width.parse().ok()?))
}

/// Registers the body's variables under `vs` (names as the PyTorch state_dict) and returns it.
///
/// # Panics
/// If `cfg` is invalid; configs from [`ArchConfig::preset`] and checkpoints are validated. Use
/// [`try_build_backbone`] for configs from elsewhere.
pub fn build_backbone(vs: &nn::Path, cfg: &ArchConfig) -> Box<dyn Backbone> {
    try_build_backbone(vs, cfg)
        .unwrap_or_else(|e| panic!("build_backbone needs a valid config: {e}"))
}

/// Validates `cfg`, then builds the body as [`build_backbone`].
pub fn try_build_backbone(
    vs: &nn::Path,
    cfg: &ArchConfig,
) -> Result<Box<dyn Backbone>, ModelError> {
    cfg.validate()?;
    Ok(match cfg {
        ArchConfig::WideResNet(c) => Box::new(c.build_body(vs)),
        ArchConfig::Cnn(c) => Box::new(c.build_body(vs)),
        ArchConfig::ResNet(c) => Box::new(c.build_body(vs)),
        ArchConfig::EfficientNet(c) => Box::new(c.build_body(vs)),
        ArchConfig::TvEfficientNet(c) => Box::new(c.build_body(vs)),
        ArchConfig::Vit(c) => Box::new(c.build_body(vs)),
    })
}

/// Builds body + head under `vs`. The head `Linear(F → K)` is initialised as the seed's: PyTorch default
/// (U(±1/√F)) weight and bias, except WRN (zero bias, §5.1) and ViT (HF: N(0, 0.02²) weight, zero bias).
///
/// # Panics
/// If `cfg` is invalid (see [`build_backbone`]); [`try_build_classifier`] returns an error instead.
pub fn build_classifier(vs: &nn::Path, cfg: &ArchConfig) -> Classifier {
    try_build_classifier(vs, cfg)
        .unwrap_or_else(|e| panic!("build_classifier needs a valid config: {e}"))
}

/// Validates `cfg`, then builds the classifier as [`build_classifier`].
pub fn try_build_classifier(vs: &nn::Path, cfg: &ArchConfig) -> Result<Classifier, ModelError> {
    let body = try_build_backbone(vs, cfg)?;
    let (f, k) = (cfg.feature_dim(), cfg.num_classes());
    // The head name may be dotted (`classifier.1`); tch paths take one component at a time.
    let head_vs = cfg
        .head_name()
        .split('.')
        .fold(vs.clone(), |p, part| &p / part);
    let head = match cfg {
        ArchConfig::WideResNet(_) => {
            let bound = 1.0 / (f as f64).sqrt();
            linear_with(
                head_vs,
                f,
                k,
                Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
                Init::Const(0.0),
            )
        }
        ArchConfig::Vit(_) => linear_with(
            head_vs,
            f,
            k,
            Init::Randn {
                mean: 0.0,
                stdev: VIT_INIT_STD,
            },
            Init::Const(0.0),
        ),
        _ => linear(head_vs, f, k),
    };
    Ok(Classifier { body, head })
}
