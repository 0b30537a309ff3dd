//! A stable-toolchain mutation fuzzer for the file parsers (the fallback when cargo-fuzz/libFuzzer is not
//! available): starting from the seed files in `fuzz/seeds/<target>/`, it applies random byte flips,
//! overwrites with boundary values, truncations, insertions, chunk duplications and splices, runs the
//! parser under `catch_unwind`, and saves any input that panics to `fuzz/artifacts/<target>/`.
//!
//! Usage: `fuzz_loop <target|all> <seconds per target> [seed]`, targets: cifar_binary, pickle, mat, npy, idx,
//! npz, image.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Target = fn(&[u8]);

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

/// xorshift64*: a tiny deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [&[u8]; 10] = [
    &[0],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0xff, 0xff, 0xff, 0xff],
    &[0xff, 0xff, 0xff, 0x7f],
    &[0, 0, 0, 0x80],
    &[1, 0, 0, 0],
    &[0xff; 8],
    &[0x2e],
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let n = b.len();
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = rng.next() as u8;
            }
            2 if n > 0 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(n);
                for (k, &x) in v.iter().enumerate() {
                    if i + k < n {
                        b[i + k] = x;
                    }
                }
            }
            3 => b.truncate(rng.below(n + 1)),
            4 => {
                let i = rng.below(n + 1);
                let len = 1 + rng.below(16);
                let ins: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                b.splice(i..i, ins);
            }
            5 if n > 1 => {
                let a = rng.below(n);
                let len = 1 + rng.below((n - a).min(64));
                let chunk = b[a..a + len].to_vec();
                let at = rng.below(n);
                b.splice(at..at, chunk);
            }
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(b.len() + 1);
                let from = rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
        }
    }
    b
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_else(|| "all".into());
    let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d);
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz"));
    std::panic::set_hook(Box::new(|_| {})); // panics are counted and saved, not printed
    let mut any_crash = false;
    for (name, f) in targets() {
        if which != "all" && which != name {
            continue;
        }
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(root.join("seeds").join(name))
            .map(|rd| {
                rd.filter_map(|e| std::fs::read(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if seeds.is_empty() {
            seeds.push(Vec::new());
        }
        let mut rng = Rng(seed ^ (name.len() as u64 * 0x9e37_79b9));
        let (mut runs, mut crashes) = (0u64, 0u64);
        let start = Instant::now();
        // Grow a small corpus of inputs that parsed without panicking, to mutate further.
        let mut pool = seeds.clone();
        while start.elapsed() < Duration::from_secs(secs) {
            let base = pool[rng.below(pool.len())].clone();
            let input = mutate(&mut rng, &seeds, &base);
            runs += 1;
            if std::panic::catch_unwind(|| f(&input)).is_err() {
                crashes += 1;
                let dir = root.join("artifacts").join(name);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(format!("crash-{runs}")), &input);
            } else if rng.below(64) == 0 && pool.len() < 256 && input.len() < 1 << 20 {
                pool.push(input);
            }
        }
        println!("{name}: {runs} runs in {secs} s, {crashes} panicking inputs");
        any_crash |= crashes > 0;
    }
    if any_crash {
        std::process::exit(1);
    }
}
