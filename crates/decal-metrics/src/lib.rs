//! Calibration, proper-score and OOD metrics with named definition profiles (no tensors).
