//! NumPy .npy/.npz and CSV readers and writers for decal (no tensors).
