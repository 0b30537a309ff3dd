//! Stage-1 training: checkpoint (being implemented).
