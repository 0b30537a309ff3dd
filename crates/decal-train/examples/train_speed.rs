//! Training and inference throughput of a stage-1 classifier on the CPU (or a GPU), for
//! `bench/train_speed.sh`: the same work as one step of `decal train` (forward in train mode,
//! cross-entropy, backward, decal's Adam step) and of `decal eval` (no-grad forward in eval mode), on
//! random normalised 32×32 inputs so that data loading is excluded. The PyTorch twin is
//! `bench/reference/train_speed.py`.
//!
//! Usage: `train_speed <preset> <batch_size> <threads> <train_steps> <infer_steps> [device] [precision]`
//! (device `cpu` | `cuda`, precision `fp32` | `bf16` | `fp16`: the forward passes under that autocast, as
//! `decal train --precision`); prints one JSON object per measurement.

use decal_train::losses::cross_entropy;
use decal_train::optim::{named_trainable, Optimizer, OptimizerConfig};
use decal_train::precision::{with_autocast, Precision};
use std::time::Instant;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: train_speed <preset> <batch_size> <threads> <train_steps> <infer_steps> [device]");
        std::process::exit(2);
    }
    let preset = &args[1];
    let batch: i64 = args[2].parse().expect("batch size should be an integer");
    let threads: i32 = args[3].parse().expect("threads should be an integer");
    let train_steps: usize = args[4].parse().expect("train steps should be an integer");
    let infer_steps: usize = args[5]
        .parse()
        .expect("inference steps should be an integer");
    let device = decal_models::device::parse(args.get(6).map_or("cpu", String::as_str))
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    let precision =
        Precision::parse(args.get(7).map_or("fp32", String::as_str)).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(2)
        });
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let arch = decal_models::ArchConfig::preset(preset, 10).expect("known preset");
    let vs = VarStore::new(device);
    let model = decal_models::build_classifier(&vs.root(), &arch);
    let mut opt = Optimizer::new(OptimizerConfig::seed_adam(), named_trainable(&vs))
        .expect("valid optimiser");
    let x = Tensor::randn([batch, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(10, [batch], (Kind::Int64, device));
    let sync = || {
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0);
        }
    };
    let mut train_step = || {
        opt.zero_grad();
        let logits = with_autocast(precision, device, || model.forward_t(&x, true))
            .expect("autocast on cpu/cuda");
        let loss = cross_entropy(&logits.to_kind(Kind::Float), &y);
        loss.backward();
        opt.step(1e-4);
    };
    for _ in 0..2 {
        train_step(); // warm-up: allocator, oneDNN primitive caches
    }
    sync();
    let t = Instant::now();
    for _ in 0..train_steps {
        train_step();
    }
    sync();
    let train_ips = (train_steps as f64 * batch as f64) / t.elapsed().as_secs_f64();
    let infer = || {
        tch::no_grad(|| {
            with_autocast(precision, device, || model.forward_t(&x, false))
                .expect("autocast on cpu/cuda")
                .sum(Kind::Float)
                .double_value(&[])
        })
    };
    for _ in 0..2 {
        infer();
    }
    let t = Instant::now();
    for _ in 0..infer_steps {
        infer();
    }
    let infer_ips = (infer_steps as f64 * batch as f64) / t.elapsed().as_secs_f64();
    println!(
        "{{\"impl\": \"decal\", \"model\": \"{preset}\", \"precision\": \"{precision}\", \"batch\": {batch}, \"threads\": {threads}, \
         \"train_images_per_sec\": {train_ips:.1}, \"infer_images_per_sec\": {infer_ips:.1}}}"
    );
}
