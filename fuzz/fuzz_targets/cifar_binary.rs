//! libFuzzer target: CIFAR-10/100 binary records must return errors, never panic, on any input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decal_data::cifar::parse_cifar10_binary_bytes(data);
    let _ = decal_data::cifar::parse_cifar_binary_bytes(
        data,
        decal_data::cifar::CifarKind::Cifar100Fine,
        std::path::Path::new("fuzz"),
    );
});
