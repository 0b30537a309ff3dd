//! Tables, reliability diagrams and HTML reports from metric records (no tensors).
