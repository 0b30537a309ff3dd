//! libFuzzer target: the MNIST-family IDX reader must return errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_data::idx::parse_idx_bytes(data);
});
