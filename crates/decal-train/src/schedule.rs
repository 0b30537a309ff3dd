//! Stage-1 training: schedule (being implemented).
