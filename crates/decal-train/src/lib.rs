//! Stage-1 (classifier) and stage-2 (TST / V-TST heads) training on tch/libtorch.

pub mod checkpoint;
pub mod features;
pub mod losses;
pub mod optim;
pub mod schedule;
pub mod stage1;
pub mod stage2;
