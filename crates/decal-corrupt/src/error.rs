//! Errors of the corruption generator: every variant names the file, corruption or value at fault.

use std::path::PathBuf;

/// Everything that can go wrong while generating corruptions.
#[derive(Debug, thiserror::Error)]
pub enum CorruptError {
    /// A corruption name that is not one of the 19 known ones (nor `all` / `standard` / `extra`).
    #[error("unknown corruption '{name}'; expected one of: all, standard, extra, {known}")]
    UnknownCorruption {
        /// The name as given.
        name: String,
        /// Comma-separated list of valid names.
        known: String,
    },
    /// A severity outside 1..=5 or not an integer.
    #[error("invalid severity '{value}': severities are integers from 1 to 5")]
    BadSeverity {
        /// The value as given.
        value: String,
    },
    /// An empty corruption or severity list.
    #[error("empty {what} list")]
    EmptyList {
        /// `corruption` or `severity`.
        what: &'static str,
    },
    /// The source images do not have the shape the CIFAR recipe is defined for.
    #[error("{source_name}: images are {height}×{width}×{channels}; the CIFAR-10-C recipe is defined for 32×32×3 RGB images (resize the dataset first)")]
    UnsupportedShape {
        /// Dataset description.
        source_name: String,
        /// Image height.
        height: usize,
        /// Image width.
        width: usize,
        /// Channels per pixel.
        channels: usize,
    },
    /// Pixel buffer and labels disagree with the declared shape.
    #[error("{source_name}: {detail}")]
    InconsistentSource {
        /// Dataset description.
        source_name: String,
        /// What is inconsistent.
        detail: String,
    },
    /// `frost` was requested but no frost textures were loaded.
    #[error("frost needs the frost textures (frost1.png … frost5.jpg); pass --frost-dir")]
    MissingFrostTextures,
    /// A frost texture could not be read or is too small.
    #[error("frost texture {path}: {detail}")]
    FrostTexture {
        /// Texture file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// JPEG encoding or decoding failed (jpeg_compression).
    #[error("jpeg round trip failed: {0}")]
    Jpeg(String),
    /// A manifest exists but cannot be parsed.
    #[error("manifest {path}: {detail}")]
    Manifest {
        /// Manifest path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Writing an output `.npy` file failed.
    #[error("cannot write {path}: {detail}")]
    NpyWrite {
        /// Output path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Writing a grid image failed.
    #[error("cannot write image {path}: {detail}")]
    ImageWrite {
        /// Output path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// File system errors from the shared helpers (atomic writes, output-directory checks).
    #[error(transparent)]
    Core(#[from] decal_core::CoreError),
}
