//! Helpers shared by the integration tests: small synthetic images on disk.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use decal_eval::runner::{Executor, RunnerOptions};
use decal_eval::units::ExecOptions;

/// A serial run on the CPU with one thread, as a test runs it.
pub fn serial_cpu() -> RunnerOptions {
    RunnerOptions {
        force: false,
        exec: ExecOptions {
            device: tch::Device::Cpu,
            threads: Some(1),
            head_threads: Some(1),
            batch_siblings: true,
        },
        exe: PathBuf::from("decal"),
        unit_args: Vec::new(),
        executor: Executor::Serial,
        keep_going: false,
    }
}

/// A 24-bit uncompressed BMP (bottom-up rows, BGR).
pub fn write_bmp(path: &Path, side: usize, rgb: &[u8]) {
    let row = side * 3;
    let size = 54 + row * side;
    let mut b = Vec::with_capacity(size);
    b.extend(b"BM");
    b.extend((size as u32).to_le_bytes());
    b.extend([0u8; 4]);
    b.extend(54u32.to_le_bytes());
    b.extend(40u32.to_le_bytes());
    b.extend((side as i32).to_le_bytes());
    b.extend((side as i32).to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(24u16.to_le_bytes());
    b.extend([0u8; 24]);
    for y in (0..side).rev() {
        for x in 0..side {
            let p = &rgb[(y * side + x) * 3..][..3];
            b.extend([p[2], p[1], p[0]]);
        }
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b).unwrap();
}

pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}
