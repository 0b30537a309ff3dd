//! Explicit, seeded Gaussian noise for the stochastic heads (STYLE R5; fixes the seed's unseeded
//! evaluation, seed-system.md §15 Q-7).
//!
//! The noise ε of the V-TST reparameterisation is drawn here, on the CPU, from a generator the caller
//! owns, and then copied to the tensor's device. That makes every V-TST number reproducible from
//! `(seed, call order)` alone, independent of libtorch's global generator and of the device.
//!
//! Generator: xoshiro256++ (Blackman & Vigna, 2019) seeded through splitmix64; normals by the
//! Box–Muller transform in f64, rounded to f32.

use decal_core::rng::Xoshiro256pp;
use tch::{Device, Kind, Tensor};

/// A seeded source of standard-normal samples.
#[derive(Debug, Clone)]
pub struct NormalRng {
    bits: Xoshiro256pp,
    /// A second Box–Muller output kept for the next call.
    spare: Option<f64>,
}

impl NormalRng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        NormalRng {
            bits: Xoshiro256pp::new(seed),
            spare: None,
        }
    }

    /// The next 64 uniformly distributed bits (xoshiro256++).
    pub fn next_u64(&mut self) -> u64 {
        self.bits.next_u64()
    }

    /// A uniform number in the open interval (0, 1), 53 bits of precision.
    pub fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// One standard-normal sample.
    pub fn next_normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = self.next_open01();
        let u2 = self.next_open01();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }

    /// A random permutation of `0..n` (Fisher–Yates), for seeded shuffling.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            // Multiply-shift reduction: bias below 2^-32 for any n that fits in memory.
            let j = (((self.next_u64() >> 32) * (i as u64 + 1)) >> 32) as usize;
            perm.swap(i, j);
        }
        perm
    }

    /// A float32 tensor of standard normals with the given shape on `device`.
    pub fn normal_tensor(&mut self, shape: &[i64], device: Device) -> Tensor {
        let numel: i64 = shape.iter().product();
        let values: Vec<f32> = (0..numel).map(|_| self.next_normal() as f32).collect();
        Tensor::from_slice(&values)
            .reshape(shape)
            .to_kind(Kind::Float)
            .to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_different_seed_differs() {
        let mut a = NormalRng::new(7);
        let mut b = NormalRng::new(7);
        let mut c = NormalRng::new(8);
        let xa: Vec<f64> = (0..10).map(|_| a.next_normal()).collect();
        let xb: Vec<f64> = (0..10).map(|_| b.next_normal()).collect();
        let xc: Vec<f64> = (0..10).map(|_| c.next_normal()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
    }

    #[test]
    fn normals_have_unit_moments() {
        let mut rng = NormalRng::new(1);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.next_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        // Standard errors: mean 1/sqrt(n) ≈ 0.0022, variance sqrt(2/n) ≈ 0.0032; allow ~5 SE.
        assert!(mean.abs() < 0.012, "mean {mean}");
        assert!((var - 1.0).abs() < 0.016, "var {var}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut rng = NormalRng::new(3);
        let mut p = rng.permutation(1000);
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..1000).collect::<Vec<_>>());
    }
}
