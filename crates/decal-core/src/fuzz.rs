//! A small stable-toolchain mutation fuzzer for decal's file parsers, used by the `fuzz_loop` examples
//! (`decal-data`: image, array and pickle readers; `decal-models`: checkpoints) where cargo-fuzz/libFuzzer
//! is not available: starting from seed files in `fuzz/seeds/<target>/` it applies random byte flips,
//! boundary values, truncations, insertions, chunk duplications and splices, runs the parser under
//! `catch_unwind`, and saves any input that panics to `fuzz/artifacts/<target>/`. Not used by decal itself.

use std::path::Path;
use std::time::{Duration, Instant};

/// A parser under test: it may return an error, but must not panic (or abort, which ends the run).
pub type Target = fn(&[u8]);

/// xorshift64*: a tiny deterministic generator.
pub struct Rng(pub u64);
impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Boundary byte patterns written over an input.
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

/// One to six random edits of `input` (bit flips, boundary values, truncation, insertion, duplication,
/// splices with a seed).
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
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
                b[i] = rng.next_u64() as u8;
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
                let ins: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
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

/// The fuzzing examples' command line: `<target|all> <seconds per target> [seed]` (defaults: all, 60,
/// 0x5eed_f00d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// A target's name, or `all`.
    pub which: String,
    /// Seconds per target.
    pub secs: u64,
    /// Seed of the mutations.
    pub seed: u64,
}

impl Args {
    /// Parses the process's arguments (unparsable numbers fall back to the defaults).
    pub fn from_env() -> Self {
        Self::parse(&std::env::args().skip(1).collect::<Vec<_>>())
    }

    /// Parses `args` (without the program name).
    pub fn parse(args: &[String]) -> Self {
        Args {
            which: args.first().cloned().unwrap_or_else(|| "all".into()),
            secs: args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60),
            seed: args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5eed_f00d),
        }
    }
}

/// Fuzzes every target of `targets` named `which` (or all, `"all"`) for `secs` seconds each, from the seeds
/// in `root/seeds/<name>/`; panicking inputs go to `root/artifacts/<name>/`. Prints one line per target and
/// returns whether any input panicked.
pub fn run(root: &Path, targets: &[(&str, Target)], which: &str, secs: u64, seed: u64) -> bool {
    std::panic::set_hook(Box::new(|_| {})); // panics are counted and saved, not printed
    let mut any_crash = false;
    for &(name, f) in targets {
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
    let _ = std::panic::take_hook();
    any_crash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_their_defaults() {
        let a = Args::parse(&["npy".into(), "5".into(), "9".into()]);
        assert_eq!((a.which.as_str(), a.secs, a.seed), ("npy", 5, 9));
        assert_eq!(
            Args::parse(&[]),
            Args {
                which: "all".into(),
                secs: 60,
                seed: 0x5eed_f00d
            }
        );
    }

    #[test]
    fn mutation_is_deterministic_and_a_panicking_target_is_saved() {
        let seeds = vec![b"abcdef".to_vec()];
        let (mut a, mut b) = (Rng(7), Rng(7));
        assert_eq!(
            mutate(&mut a, &seeds, b"hello"),
            mutate(&mut b, &seeds, b"hello")
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("seeds/t")).unwrap();
        std::fs::write(dir.path().join("seeds/t/s"), b"xy").unwrap();
        let targets: [(&str, Target); 1] = [("t", |d| assert!(d.len() < 4, "long input"))];
        assert!(run(dir.path(), &targets, "t", 1, 1));
        assert!(
            std::fs::read_dir(dir.path().join("artifacts/t"))
                .unwrap()
                .count()
                > 0
        );
    }
}
