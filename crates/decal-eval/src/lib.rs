//! Evaluation suite: predictions, OOD, corruption sweeps on tch/libtorch.
