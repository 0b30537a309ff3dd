//! CIFAR-10-C style corruption generator (no tensors).
