//! Train/validation splits.
//!
//! [`seed_split`] reproduces the seed's split bit for bit (seed spec §4.3):
//! `random_split(dataset, [train, valid], generator=torch.Generator().manual_seed(1))`, which is
//! `perm = torch.randperm(N, generator=g)`; `train = perm[:train_size]`, `valid = perm[train_size:]` with
//! `train_size = int(N · fraction)`. PyTorch's CPU `randperm` (ATen `randperm_cpu`, unchanged from 1.x to
//! 2.11) for `N < 2³²/20` is the swap shuffle `for i in 0..N-1: z = gen.random() % (N-i); swap(r[i], r[i+z])`
//! where `gen.random()` is the next 32-bit output of MT19937 seeded with `init_genrand(seed)`; for larger
//! `N` it is the "inside-out" Fisher–Yates over `random64()`. Both are implemented; the first is pinned
//! against torch 2.11 in `tests/split.rs` (first/last indices and SHA-256 of the whole permutation for
//! N = 10, 1,000, 50,000, 73,257, 100,000).
//!
//! [`SplitManifest`] records a split (with a SHA-256 over the indices) so that every run directory says
//! exactly which images were used for training and which for validation. [`TrainValid`] refuses to be
//! built from a test split, so fitting on test data cannot happen by accident.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::ImageSet;

/// MT19937, the engine of PyTorch's CPU generator (`at::mt19937`).
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`: PyTorch truncates the 64-bit seed to 32 bits (`seed & 0xffffffff`).
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; 624];
        state[0] = (seed & 0xffff_ffff) as u32;
        for k in 1..624 {
            let prev = state[k - 1];
            state[k] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(k as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.index = 0;
    }

    /// Next 32-bit output (`CPUGeneratorImpl::random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// `CPUGeneratorImpl::random64()`: two draws, the first is the high word.
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` on the CPU.
pub fn torch_randperm(n: usize, seed: u64) -> Vec<usize> {
    let mut g = Mt19937::new(seed);
    let mut r: Vec<usize> = (0..n).collect();
    if (n as u64) < (u32::MAX as u64) / 20 {
        for i in 0..n.saturating_sub(1) {
            let z = (g.next_u32() as u64 % (n - i) as u64) as usize;
            r.swap(i, i + z);
        }
    } else {
        for i in 0..n {
            let z = (g.next_u64() % (i as u64 + 1)) as usize;
            r[i] = r[z];
            r[z] = i;
        }
    }
    r
}

/// `int(n · train_fraction)` as Python computes it (the fraction is a Python float).
pub fn train_size(n: usize, train_fraction: f64) -> usize {
    (n as f64 * train_fraction).floor() as usize
}

/// The seed's split: `(train_indices, valid_indices)` exactly as
/// `random_split(range(n), [int(n·f), n − int(n·f)], generator=Generator().manual_seed(generator_seed))`.
///
/// The seed calls it with `train_fraction = 0.8` (0.95 for CIFAR-100) and `generator_seed = 1`.
pub fn seed_split(n: usize, train_fraction: f64, generator_seed: u64) -> (Vec<usize>, Vec<usize>) {
    let perm = torch_randperm(n, generator_seed);
    let t = train_size(n, train_fraction).min(n);
    let valid = perm[t..].to_vec();
    let mut train = perm;
    train.truncate(t);
    (train, valid)
}

/// **The** meaning of every `limit` in decal (one owner, issue #11): `limit` images evenly spaced over a
/// set of `n` in its order — positions `⌊i·n/limit⌋` for `i < limit` — and all `n` when `limit` is 0 or
/// at least `n`. Unlike a prefix this keeps every class of a class-ordered copy (the CIFAR-10 JPEG test
/// set stores 1,000 airplanes first); on a shuffled list (a split part) it is as random as a prefix.
/// Used by `[data] limit_test`, `[[ood]] limit`, `decal eval --limit` and, through [`limit`], by
/// `limit_train` / `limit_val` on the split's parts.
pub fn evenly_spaced(n: usize, limit: usize) -> Vec<usize> {
    if limit == 0 || limit >= n {
        (0..n).collect()
    } else {
        (0..limit).map(|i| i * n / limit).collect()
    }
}

/// The entries of `indices` that a `limit` keeps ([`evenly_spaced`] positions of the list), in order.
pub fn limit(indices: &[usize], limit: usize) -> Vec<usize> {
    evenly_spaced(indices.len(), limit)
        .into_iter()
        .map(|p| indices[p])
        .collect()
}

/// A clean alternative to the seed's split: stratified (every class keeps its proportion, up to
/// rounding), seeded (per class, a torch-compatible `randperm` with `generator_seed + class`), and with
/// both index lists sorted ascending so that the split does not depend on the loader's shuffling.
/// Per class, `round(count · (1 − train_fraction))` images go to validation (at least one when the class
/// has two or more images and the fraction is below one).
pub fn stratified_split(
    labels: &[u32],
    train_fraction: f64,
    generator_seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let k = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        per_class[l as usize].push(i);
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (c, idx) in per_class.iter().enumerate() {
        let n = idx.len();
        let mut nv = (n as f64 * (1.0 - train_fraction)).round() as usize;
        if nv == 0 && n >= 2 && train_fraction < 1.0 {
            nv = 1;
        }
        let perm = torch_randperm(n, generator_seed.wrapping_add(c as u64));
        for (j, &p) in perm.iter().enumerate() {
            if j < n - nv.min(n) {
                train.push(idx[p]);
            } else {
                valid.push(idx[p]);
            }
        }
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

/// How a split was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMethod {
    /// The seed's `random_split` ([`seed_split`]).
    SeedRandomSplit,
    /// [`stratified_split`].
    Stratified,
}

/// A record of one train/validation split, saved in each run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    /// Dataset name (`cifar10`, …).
    pub dataset: String,
    /// Size of the split source (the training set).
    pub n: usize,
    /// Fraction of `n` used for training.
    pub train_fraction: f64,
    /// Generator seed.
    pub generator_seed: u64,
    /// How the split was made.
    pub method: SplitMethod,
    /// Training indices, in the order the seed iterates them.
    pub train_indices: Vec<usize>,
    /// Validation indices.
    pub valid_indices: Vec<usize>,
    /// SHA-256 of `train_indices` then `valid_indices` as little-endian u64 values.
    pub sha256: String,
}

fn indices_sha256(train: &[usize], valid: &[usize]) -> String {
    let mut bytes = Vec::with_capacity(8 * (train.len() + valid.len()));
    for &i in train.iter().chain(valid) {
        bytes.extend((i as u64).to_le_bytes());
    }
    decal_core::sha256_bytes(&bytes)
}

impl SplitManifest {
    /// The seed's split of a dataset of `n` training images.
    pub fn seed(dataset: &str, n: usize, train_fraction: f64, generator_seed: u64) -> Result<Self> {
        check_fraction(train_fraction)?;
        let (train_indices, valid_indices) = seed_split(n, train_fraction, generator_seed);
        Ok(Self::from_parts(
            dataset,
            n,
            train_fraction,
            generator_seed,
            SplitMethod::SeedRandomSplit,
            train_indices,
            valid_indices,
        ))
    }

    /// A stratified split of a labelled training set.
    pub fn stratified(
        dataset: &str,
        labels: &[u32],
        train_fraction: f64,
        generator_seed: u64,
    ) -> Result<Self> {
        check_fraction(train_fraction)?;
        let (t, v) = stratified_split(labels, train_fraction, generator_seed);
        Ok(Self::from_parts(
            dataset,
            labels.len(),
            train_fraction,
            generator_seed,
            SplitMethod::Stratified,
            t,
            v,
        ))
    }

    fn from_parts(
        dataset: &str,
        n: usize,
        train_fraction: f64,
        generator_seed: u64,
        method: SplitMethod,
        train_indices: Vec<usize>,
        valid_indices: Vec<usize>,
    ) -> Self {
        let sha256 = indices_sha256(&train_indices, &valid_indices);
        SplitManifest {
            dataset: dataset.into(),
            n,
            train_fraction,
            generator_seed,
            method,
            train_indices,
            valid_indices,
            sha256,
        }
    }

    /// Writes the manifest as JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(decal_core::write_json_atomic(path, self)?)
    }

    /// Reads a manifest and checks its SHA-256 and that the indices partition `0..n`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        let m: SplitManifest = serde_json::from_str(&text)
            .map_err(|e| DataError::format(path, format!("invalid split manifest: {e}")))?;
        m.check().map_err(|e| DataError::format(path, e))?;
        Ok(m)
    }

    /// Checks the checksum and that train and validation partition `0..n`.
    pub fn check(&self) -> std::result::Result<(), String> {
        let sha = indices_sha256(&self.train_indices, &self.valid_indices);
        if sha != self.sha256 {
            return Err(format!(
                "split manifest checksum mismatch: recorded {}, computed {sha}",
                self.sha256
            ));
        }
        let mut seen = vec![false; self.n];
        for &i in self.train_indices.iter().chain(&self.valid_indices) {
            match seen.get_mut(i) {
                Some(s) if !*s => *s = true,
                Some(_) => return Err(format!("index {i} appears twice")),
                None => return Err(format!("index {i} outside 0..{}", self.n)),
            }
        }
        if seen.iter().any(|s| !s) {
            return Err(format!("indices do not cover 0..{}", self.n));
        }
        Ok(())
    }
}

fn check_fraction(f: f64) -> Result<()> {
    if f.is_nan() || f <= 0.0 || f >= 1.0 {
        return Err(DataError::Invalid(format!(
            "train fraction {f} must lie strictly between 0 and 1"
        )));
    }
    Ok(())
}

/// A training set divided into train and validation parts by a [`SplitManifest`]. Cannot be built from
/// a test split: fitting (stage 1/2 training, temperature scaling, model selection) goes through this type.
#[derive(Debug, Clone)]
pub struct TrainValid {
    /// The split source (the official training split).
    pub source: std::sync::Arc<ImageSet>,
    /// Which indices of `source` are train and which validation.
    pub manifest: SplitManifest,
}

impl TrainValid {
    /// Pairs a training set with a split of it; refuses test splits and size mismatches.
    pub fn new(source: std::sync::Arc<ImageSet>, manifest: SplitManifest) -> Result<Self> {
        if source.is_test_split() {
            return Err(DataError::Invalid(format!(
                "{}: refusing to split a test set into train/validation (load the train split)",
                source.name
            )));
        }
        if source.len() != manifest.n {
            return Err(DataError::Invalid(format!(
                "{}: split manifest is for {} images but the set has {}",
                source.name,
                manifest.n,
                source.len()
            )));
        }
        manifest.check().map_err(DataError::Invalid)?;
        Ok(TrainValid { source, manifest })
    }

    /// The seed's split of `source` with `generator_seed` 1 and the given training fraction.
    pub fn seed(
        source: std::sync::Arc<ImageSet>,
        dataset: &str,
        train_fraction: f64,
    ) -> Result<Self> {
        let m = SplitManifest::seed(dataset, source.len(), train_fraction, 1)?;
        TrainValid::new(source, m)
    }
}

/// The seed's training fraction for a dataset (0.95 for CIFAR-100, otherwise 0.8; seed spec §4.3).
pub fn seed_train_fraction(dataset: crate::DatasetName) -> f64 {
    if dataset == crate::DatasetName::Cifar100 {
        0.95
    } else {
        0.8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_keeps_evenly_spaced_images_of_every_class() {
        assert_eq!(evenly_spaced(10, 0), (0..10).collect::<Vec<_>>());
        assert_eq!(evenly_spaced(10, 12), (0..10).collect::<Vec<_>>());
        assert_eq!(evenly_spaced(10, 4), vec![0, 2, 5, 7]);
        // A class-ordered set of 3 classes × 100: a limit of 30 keeps 10 of each (a prefix would keep one).
        let labels: Vec<usize> = (0..300).map(|i| i / 100).collect();
        let kept = evenly_spaced(300, 30);
        for c in 0..3 {
            assert_eq!(kept.iter().filter(|&&i| labels[i] == c).count(), 10);
        }
        assert_eq!(limit(&[9, 8, 7, 6, 5, 4], 3), vec![9, 7, 5]);
        assert_eq!(limit(&[9, 8], 0), vec![9, 8]);
    }
}
