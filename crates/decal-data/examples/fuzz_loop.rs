//! The stable-toolchain mutation fuzzer ([`decal_core::fuzz`]) over the data readers (the fallback when
//! cargo-fuzz/libFuzzer is not available); seeds in `fuzz/seeds/<target>/`, panicking inputs saved to
//! `fuzz/artifacts/<target>/`.
//!
//! Usage: `fuzz_loop <target|all> <seconds per target> [seed]`, targets: cifar_binary, pickle, mat, npy, idx,
//! npz, image.

use std::path::{Path, PathBuf};

use decal_core::fuzz::Target;

fn targets() -> Vec<(&'static str, Target)> {
    vec![
        ("cifar_binary", |d| {
            let _ = decal_data::cifar::parse_cifar10_binary_bytes(d);
            let _ = decal_data::cifar::parse_cifar_binary_bytes(
                d,
                decal_data::cifar::CifarKind::Cifar100Fine,
                Path::new("f"),
            );
        }),
        ("pickle", |d| {
            let _ = decal_pickle::parse(d);
            let _ = decal_data::cifar::parse_cifar_pickle_bytes(
                d,
                decal_data::cifar::CifarKind::Cifar10,
                Path::new("f"),
            );
        }),
        ("mat", |d| {
            let _ = decal_data::svhn::parse_svhn_bytes(d, Path::new("f"));
        }),
        ("npy", |d| {
            let _ = decal_io::npy::from_bytes(d, Path::new("f"));
        }),
        ("idx", |d| {
            let _ = decal_data::idx::parse_idx_bytes(d);
        }),
        ("npz", |d| {
            let _ = decal_io::npz::from_bytes(d, Path::new("f.npz"));
        }),
        ("image", |d| {
            let _ = decal_data::imagefolder::decode_image_bytes(
                d,
                Path::new("f"),
                decal_data::imagefolder::ColorMode::Rgb,
            );
        }),
    ]
}

fn main() {
    let args = decal_core::fuzz::Args::from_env();
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    if decal_core::fuzz::run(&root, &targets(), &args.which, args.secs, args.seed) {
        std::process::exit(1);
    }
}
