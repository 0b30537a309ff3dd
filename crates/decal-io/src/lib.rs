//! NumPy .npy/.npz and CSV readers and writers for decal (no tensors).
//!
//! - [`npy`]: `.npy` versions 1.0/2.0/3.0, every numeric dtype, either byte order, C or Fortran order;
//!   whole-file [`npy::read`] / atomic [`npy::write`] and a bounded-memory row streamer [`npy::NpyReader`].
//! - [`npz`]: `.npz` archives (stored or deflated members).
//! - [`csv`]: numeric matrices in CSV with an optional header row.
//! - [`matrix`]: loading a `[N, K]` score matrix or an `[N]` label vector from any of the above,
//!   with the checks every command needs (shape, finiteness, label range).
#![warn(missing_docs)]

pub mod csv;
pub mod error;
pub mod matrix;
pub mod mmap;
pub mod npy;
pub mod npz;

pub use error::IoError;
pub use npy::{NpyArray, NpyData};
