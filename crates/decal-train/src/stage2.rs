//! Stage 2: stage2 (being implemented).
