//! Stage-1 training: losses (being implemented).
