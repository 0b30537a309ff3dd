//! libFuzzer target: the .npy reader of decal-io (CIFAR-10-C files) must return errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_io::npy::from_bytes(data, std::path::Path::new("fuzz"));
});
