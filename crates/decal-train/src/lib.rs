//! Stage-1 (classifier) and stage-2 (TST / V-TST heads) training on tch/libtorch.
//!
//! Stage 1: [`losses`], [`optim`], [`schedule`], mixed precision in [`precision`], the loop in [`stage1`],
//! resumable training state in [`checkpoint`] and the `best/` classifier files in [`stage1::artifacts`]. Stage 2: [`features`],
//! the augmented view cache [`views`], [`stage2`] and [`stage2_batched`] (every seed of a head as one batched model).
#![warn(missing_docs)]

pub mod checkpoint;
pub mod features;
pub mod losses;
pub mod optim;
pub mod precision;
pub mod schedule;
pub mod stage1;
pub mod stage2;
pub mod stage2_batched;
pub mod views;
