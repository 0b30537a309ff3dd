//! libFuzzer target: the pickle VM and the CIFAR python-batch reader on top of it must return errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_pickle::parse(data);
    let _ = decal_data::cifar::parse_cifar_pickle_bytes(
        data,
        decal_data::cifar::CifarKind::Cifar10,
        std::path::Path::new("fuzz"),
    );
});
