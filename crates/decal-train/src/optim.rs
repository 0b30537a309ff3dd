//! Stage-1 training: optim (being implemented).
