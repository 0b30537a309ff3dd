//! Seeded random streams for the corruptions.
//!
//! Every (seed, corruption, severity, image index) gets its own ChaCha8 stream, keyed by the four
//! numbers laid out little-endian in the 32-byte ChaCha key. Consequences:
//! - the bytes of an image do not depend on the thread count, the order of work, `--limit`, or which
//!   other corruptions/severities are generated in the same run;
//! - the streams are *not* NumPy's MT19937 streams, so outputs are "generated corruptions" with the
//!   recipe's distributions, not a byte-for-byte copy of the published CIFAR-10-C files.

use crate::corruption::Corruption;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};

/// The random stream of one corrupted image.
pub fn image_rng(seed: u64, corruption: Corruption, severity: u8, image_index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(corruption.index() as u64).to_le_bytes());
    key[16..24].copy_from_slice(&u64::from(severity).to_le_bytes());
    key[24..].copy_from_slice(&image_index.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// `np.random.normal(loc, scale)`.
pub fn normal<R: Rng>(rng: &mut R, loc: f64, scale: f64) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    loc + scale * z
}

/// `np.random.uniform(low, high)`: uniform on `[low, high)`.
pub fn uniform<R: Rng>(rng: &mut R, low: f64, high: f64) -> f64 {
    low + (high - low) * rng.gen::<f64>()
}

/// `np.random.randint(low, high)`: uniform integer on `[low, high)` (upper bound excluded).
pub fn randint<R: Rng>(rng: &mut R, low: i64, high: i64) -> i64 {
    rng.gen_range(low..high)
}

/// `np.random.poisson(lam)`; a rate of 0 (a black pixel) gives 0 as NumPy does.
pub fn poisson<R: Rng>(rng: &mut R, lam: f64) -> f64 {
    if lam <= 0.0 {
        return 0.0;
    }
    Poisson::new(lam)
        .expect("a positive finite rate should be a valid Poisson rate")
        .sample(rng)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .map(|_| image_rng(7, Corruption::Fog, 3, 11).gen())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let x: u64 = image_rng(7, Corruption::Fog, 3, 11).gen();
        let others = [
            image_rng(8, Corruption::Fog, 3, 11).gen::<u64>(),
            image_rng(7, Corruption::Snow, 3, 11).gen::<u64>(),
            image_rng(7, Corruption::Fog, 4, 11).gen::<u64>(),
            image_rng(7, Corruption::Fog, 3, 12).gen::<u64>(),
        ];
        assert!(others.iter().all(|&o| o != x));
    }

    #[test]
    fn samplers_have_the_right_moments() {
        let mut rng = image_rng(1, Corruption::GaussianNoise, 1, 0);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng, 0.5, 0.1)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(
            (mean - 0.5).abs() < 0.002 && (var.sqrt() - 0.1).abs() < 0.002,
            "{mean} {var}"
        );
        let ps: Vec<f64> = (0..n).map(|_| poisson(&mut rng, 50.0)).collect();
        let pm = ps.iter().sum::<f64>() / n as f64;
        assert!((pm - 50.0).abs() < 0.2, "{pm}");
        assert!((0..1000).all(|_| (-1..1).contains(&randint(&mut rng, -1, 1))));
        assert_eq!(poisson(&mut rng, 0.0), 0.0);
    }
}
