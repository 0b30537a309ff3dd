//! Stage-2 heads: TST and V-TST (being implemented).
