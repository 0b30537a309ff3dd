//! Backbones, heads and checkpoints on tch/libtorch.
//!
//! Shared interface (used by `decal-train` and `decal-eval`):
//! - [`Backbone`]: the feature extractor ("body"); `features(x, train) -> [N, F]`.
//! - [`Classifier`]: a backbone plus a linear head, the stage-1 model.

use tch::{nn, Tensor};

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
}

pub mod heads;
