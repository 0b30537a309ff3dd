//! libFuzzer target: the MATLAB v5 reader (incl. zlib elements) and the SVHN decoder must return errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_data::mat::parse_mat_bytes(data);
    let _ = decal_data::svhn::parse_svhn_bytes(data, std::path::Path::new("fuzz"));
});
