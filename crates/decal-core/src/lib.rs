//! Shared vocabulary of decal: atomic file writes, checksums, output-directory safety and run provenance.
//!
//! Every other crate may depend on this one; it depends on no tensor library and does no I/O beyond
//! the small, named helpers below (which every stage uses so that "write atomically, never overwrite a
//! finished run silently" is implemented exactly once).
#![warn(missing_docs)]

pub mod bounded;
pub mod checksum;
pub mod fsutil;
pub mod fuzz;
pub mod output;
pub mod provenance;
pub mod rng;
pub mod run_version;

pub use checksum::{sha256_bytes, sha256_file};
pub use fsutil::{prepare_output_dir, write_atomic, write_json_atomic, CoreError};
pub use output::{OutputError, OutputFiles, StagedDir};
pub use provenance::Provenance;
