//! Shared fixtures of the stage-1 integration tests: a small learnable synthetic image set, a lock that
//! serialises trainings (libtorch's generator is process-wide) and a reader for safetensors files.
#![allow(dead_code)] // each test file uses a subset

use decal_data::ImageSet;
use std::path::Path;
use tch::Tensor;

/// 4 classes, 32×32 RGB: each class has its own colour bias and bright quadrant, plus noise.
pub fn synthetic(n: usize) -> ImageSet {
    let mut pixels = Vec::with_capacity(n * 32 * 32 * 3);
    let mut labels = Vec::with_capacity(n);
    let mut state = 12345u64;
    let mut noise = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % 60) as i32
    };
    for i in 0..n {
        let class = (i * 7 + i / 3) % 4;
        for y in 0..32 {
            for x in 0..32 {
                let quadrant = (y / 16) * 2 + x / 16;
                let base = if quadrant == class { 170 } else { 60 };
                for c in 0..3 {
                    let bias = if c == class % 3 { 40 } else { 0 };
                    pixels.push((base + bias + noise()).clamp(0, 255) as u8);
                }
            }
        }
        labels.push(class as u32);
    }
    ImageSet {
        name: "synthetic/train".into(),
        height: 32,
        width: 32,
        channels: 3,
        pixels,
        labels,
        class_names: (0..4).map(|c| format!("c{c}")).collect(),
    }
}

/// libtorch's default generator (weight init, dropout) is process-wide and `stage1::train` seeds it, so
/// tests that compare runs must not train concurrently (cargo runs tests on parallel threads).
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds the training lock for the rest of the test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every tensor of a safetensors file, sorted by name, with its kind.
pub fn tensors(file: &Path) -> Vec<(String, Tensor)> {
    let mut t = Tensor::read_safetensors(file).unwrap();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

/// Every tensor of a safetensors file as flat f32 values, sorted by name.
pub fn weights(file: &Path) -> Vec<(String, Vec<f32>)> {
    tensors(file)
        .into_iter()
        .map(|(k, v)| (k, Vec::<f32>::try_from(&v.view([-1])).unwrap()))
        .collect()
}
