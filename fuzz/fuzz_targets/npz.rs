//! libFuzzer target: the .npz (zip / zip64, stored or deflated) reader of decal-io must return errors, never
//! panic or allocate for sizes the archive cannot hold, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_io::npz::from_bytes(data, std::path::Path::new("fuzz.npz"));
});
