//! Stage 2: features (being implemented).
