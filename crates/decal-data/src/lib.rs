//! Dataset readers, splits, transforms and the batch loader. No tensor library: batches are plain
//! `f32` buffers that the training crates turn into tensors.

/// A labelled image dataset held in memory as raw 8-bit pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Human-readable name, e.g. `cifar10/train`.
    pub name: String,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Channels (1 or 3).
    pub channels: usize,
    /// `N × H × W × C` row-major (HWC per image), 0..=255.
    pub pixels: Vec<u8>,
    /// One label per image, each `< class_names.len()`.
    pub labels: Vec<u32>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

/// One batch ready for a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[N, C, H, W]` row-major, normalised.
    pub images: Vec<f32>,
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// One label per image.
    pub labels: Vec<i64>,
    /// Index of each image in its source `ImageSet`.
    pub indices: Vec<usize>,
}
