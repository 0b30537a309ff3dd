//! Stage-1 and stage-2 training loops on tch/libtorch.
