//! Backbones, heads and checkpoints on tch/libtorch.
//!
//! Shared interface (used by `decal-train` and `decal-eval`):
//! - [`Backbone`]: the feature extractor ("body"); `features(x, train) -> [N, F]`.
//! - [`Classifier`]: a backbone plus a linear head, the stage-1 model.
//!
//! Every backbone of the seed (seed-system.md §5) is built config-first from an [`ArchConfig`]
//! (`ArchConfig::preset("wrn-28-10", 10)`, then [`build_classifier`]); variable names mirror the seed's
//! PyTorch state_dict keys, so [`import`] is a name mapping and [`checkpoint`] files are interchangeable
//! with `safetensors` files written from PyTorch.
#![warn(missing_docs)]

use tch::{nn, Tensor};

pub mod arch;
pub mod checkpoint;
pub mod cnn;
pub mod device;
pub mod efficientnet;
pub mod efficientnet_tv;
mod error;
pub mod export;
pub mod import;
mod init;
pub mod resnet;
pub mod vit;
pub mod wrn;

pub use arch::{
    build_backbone, build_classifier, try_build_backbone, try_build_classifier, ArchConfig, PRESETS,
};
pub use error::ModelError;

/// The process-wide lock that [`seeded`] holds.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `build` right after `tch::manual_seed(seed)`, holding a process-wide lock for both.
///
/// Weight initialisation draws from libtorch's one global generator. Two threads that each seed and then
/// build (tests run in parallel; a caller may train several heads at once) can otherwise interleave, and
/// two "same seed" models silently get different weights. Every seeded construction in decal goes
/// through here; draws made later (dropout in stage-1 training) still need one training per process.
pub fn seeded<T>(seed: i64, build: impl FnOnce() -> T) -> T {
    let _guard = SEEDED.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    build()
}

/// A feature extractor: everything of a classifier up to (and including) its last hidden activation.
///
/// `train = false` means eval mode: BatchNorm uses running statistics, dropout is off. A frozen body in
/// stage 2 is always called with `train = false` unless the seed-compatibility option asks otherwise.
pub trait Backbone: std::fmt::Debug + Send {
    /// `xs`: images `[N, C, H, W]` (normalised float). Returns features `[N, F]`.
    fn features(&self, xs: &Tensor, train: bool) -> Tensor;
    /// F, the width of the feature vector.
    fn feature_dim(&self) -> i64;
}

/// Stage-1 model: `logits = head(body(x))`.
#[derive(Debug)]
pub struct Classifier {
    /// The feature extractor.
    pub body: Box<dyn Backbone>,
    /// `Linear(F → K)`.
    pub head: nn::Linear,
}

impl Classifier {
    /// Logits `[N, K]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.body.features(xs, train).apply(&self.head)
    }

    /// Features `[N, F]` (the body's output; what stage 2 consumes).
    pub fn features_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.body.features(xs, train)
    }

    /// K, the number of classes (rows of the head's weight).
    pub fn num_classes(&self) -> i64 {
        self.head.ws.size()[0]
    }

    /// F, the width of the feature vector.
    pub fn feature_dim(&self) -> i64 {
        self.body.feature_dim()
    }
}

/// Number of trainable scalars in `vs` (PyTorch's `sum(p.numel() for p in model.parameters())`:
/// BatchNorm running statistics are buffers and not counted).
pub fn num_parameters(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

pub mod heads;
