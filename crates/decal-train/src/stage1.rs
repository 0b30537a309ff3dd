//! Stage-1 training: stage1 (being implemented).
