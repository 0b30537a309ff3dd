//! Forward-pass throughput of a preset on random input, eval mode, no autograd.
//!
//! ```text
//! scripts/cargo run --release -p decal-models --example forward_speed -- <preset> [batch] [iters] [device] [size]
//! scripts/cargo run --release -p decal-models --example forward_speed -- wrn-28-10 64 5 cpu
//! ```
//! `size` defaults to 224 for `vit-b16`, 28 for `cnn-mnist` and 32 otherwise. One untimed warm-up pass.

use decal_models::{build_classifier, device, ArchConfig};
use tch::{nn, Kind, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let preset = args.first().map(String::as_str).unwrap_or("wrn-28-10");
    let batch: i64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let iters: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let dev = device::parse(args.get(3).map(String::as_str).unwrap_or("cpu"))?;
    let threads = device::set_threads(None);
    let cfg = ArchConfig::preset(preset, 10)?;
    let (channels, fixed) = cfg.input_shape();
    let size: i64 = match args.get(4) {
        Some(s) => s.parse()?,
        None => fixed.unwrap_or(32),
    };
    let vs = nn::VarStore::new(dev);
    let clf = build_classifier(&vs.root(), &cfg);
    let xs = Tensor::randn([batch, channels, size, size], (Kind::Float, dev));
    let run = || tch::no_grad(|| clf.forward_t(&xs, false).sum(Kind::Float).double_value(&[]));
    run(); // warm-up (allocations, cuDNN autotuning)
    let start = std::time::Instant::now();
    for _ in 0..iters {
        run();
    }
    let secs = start.elapsed().as_secs_f64();
    let images = (iters as i64 * batch) as f64;
    println!(
        "{preset}: {:.1} images/s ({images} images of {channels}x{size}x{size} in {secs:.2} s, batch {batch}, {dev:?}, {threads} threads)",
        images / secs
    );
    Ok(())
}
