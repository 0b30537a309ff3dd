//! CIFAR-10-C style corruption generator (no tensors).
//!
//! A Rust re-implementation of the CIFAR recipe of Hendrycks & Dietterich, "Benchmarking Neural
//! Network Robustness to Common Corruptions and Perturbations" (ICLR 2019), script
//! `ImageNet-C/create_c/make_cifar_c.py` of `github.com/hendrycks/robustness`: the 15 standard
//! corruptions plus the 4 extra ones, five severities each, with the CIFAR (32×32) parameter tables.
//!
//! What is and is not reproduced:
//! 1. Algorithms and per-severity parameters follow the script line by line (see [`recipe`]); the
//!    float-to-`uint8` conversion truncates like `np.uint8(...)` does.
//! 2. Random streams are ChaCha8 streams seeded per (seed, corruption, severity, image), not
//!    NumPy's MT19937: the output is *generated corruptions*, statistically matched to CIFAR-10-C but
//!    not byte-identical to it. Same seed ⇒ identical bytes on every platform and thread count.
//! 3. Library stand-ins (ImageMagick's motion blur, OpenCV's Canny / distance transform / affine
//!    warp, PIL's JPEG and box resize, SciPy's zoom / map_coordinates, scikit-image's HSV and
//!    Gaussian filter) are re-implemented from their documented algorithms; each module names its
//!    deviations.
//!
//! Bit-identical to the Python on the same input: contrast, pixelate, gaussian_blur, zoom_blur,
//! defocus_blur, brightness, saturate, jpeg_compression ([`jpeg`] re-implements libjpeg's integer
//! pipeline) and, for a given angle, motion_blur (`tests/golden.rs`); the random corruptions match
//! in distribution (`tests/statistics.rs`, `docs/corruptions/README.md`).
//!
//! Entry points: [`Corruption`] (names, parsing, parameters), [`corrupt_image`] (one image),
//! [`generate::generate`] (a whole dataset in the CIFAR-10-C `.npy` layout with a manifest) and
//! [`grid::write_grid`] (sample grids for visual checks).
#![warn(missing_docs)]

pub mod corruption;
pub mod error;
pub mod frost;
pub mod generate;
pub mod grid;
pub mod jpeg;
pub mod ops;
pub mod plasma;
pub mod recipe;
pub mod rng;
pub mod spatter;

pub use corruption::{parse_corruption_list, parse_severity_list, Corruption};
pub use error::CorruptError;
pub use frost::FrostTextures;
pub use generate::{generate, GenerateOptions, Manifest, SourceImages};
pub use recipe::{corrupt_image, Assets};
