//! Throughput of the data path on this machine (run by `bench/data.sh`): CIFAR-10 from the JPEG
//! ImageFolder copy, from a CIFAR binary copy written to a temporary folder, and one augmented training
//! epoch of the per-image transform (crop + flip + normalise, one thread; the transform the augmented view
//! cache uses).
//!
//! Usage: `data_bench <shared/datasets> [tmpdir]`.

use std::time::Instant;

use decal_data::transforms::Transform;
use decal_data::{load, DatasetName, SplitName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let data = std::path::PathBuf::from(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("../shared/datasets"),
    );
    let tmp = tempfile::tempdir()?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("cores available: {cores}");

    let t = Instant::now();
    let train = load(
        DatasetName::Cifar10,
        &data.join("cifar10-jpeg"),
        SplitName::Train,
    )?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "cifar10-jpeg train, ImageFolder decode: {} images in {s:.2} s = {:.0} images/s",
        train.len(),
        train.len() as f64 / s
    );
    let test = load(
        DatasetName::Cifar10,
        &data.join("cifar10-jpeg"),
        SplitName::Test,
    )?;

    // Binary copy in the official layout (5 × 10,000 + test).
    let bin = tmp.path().join("cifar-10-batches-bin");
    for b in 0..5 {
        let idx: Vec<usize> = (b * 10_000..(b + 1) * 10_000).collect();
        decal_data::cifar::write_binary(
            &train.subset(&idx, "part")?,
            None,
            &bin.join(format!("data_batch_{}.bin", b + 1)),
        )?;
    }
    decal_data::cifar::write_binary(&test, None, &bin.join("test_batch.bin"))?;
    let t = Instant::now();
    let from_bin = load(DatasetName::Cifar10, tmp.path(), SplitName::Train)?;
    let s = t.elapsed().as_secs_f64();
    println!(
        "cifar10 binary train: {} images in {s:.3} s = {:.0} images/s",
        from_bin.len(),
        from_bin.len() as f64 / s
    );
    assert_eq!(from_bin.pixels, train.pixels, "binary round trip");

    let set = from_bin;
    let transform = Transform::seed_train(DatasetName::Cifar10, 1)?;
    let [c, h, w] = transform.output_shape(set.height, set.width, set.channels);
    let mut out = vec![0f32; c * h * w];
    let t = Instant::now();
    let mut checksum = 0f64;
    for i in 0..set.len() {
        transform.apply_into(&set, i, 0, &mut out);
        checksum += out[0] as f64;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "transform epoch (crop+flip+normalise, one thread): {} images in {s:.2} s = {:.0} images/s (checksum {checksum:.3})",
        set.len(),
        set.len() as f64 / s
    );
    Ok(())
}
