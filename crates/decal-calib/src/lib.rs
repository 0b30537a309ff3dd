//! Post-hoc calibrators fitted on validation predictions: temperature, vector, histogram, isotonic (no tensors).
