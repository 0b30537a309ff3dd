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
use rand_distr::{Distribution, StandardNormal};

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
    // NumPy's `random_poisson` (numpy/random/src/distributions/distributions.c), which the legacy
    // `np.random.poisson` of the recipe uses: multiplication of uniforms below rate 10, Hörmann's
    // PTRS transformed rejection from 10 up. Same algorithm, our uniforms.
    if lam >= 10.0 {
        poisson_ptrs(rng, lam) as f64
    } else if lam <= 0.0 {
        0.0
    } else {
        let enlam = (-lam).exp();
        let mut x = 0i64;
        let mut prod = 1.0;
        loop {
            prod *= rng.gen::<f64>();
            if prod > enlam {
                x += 1;
            } else {
                return x as f64;
            }
        }
    }
}

/// Hörmann (1993) PTRS, as in NumPy's `random_poisson_ptrs`.
fn poisson_ptrs<R: Rng>(rng: &mut R, lam: f64) -> i64 {
    let slam = lam.sqrt();
    let loglam = lam.ln();
    let b = 0.931 + 2.53 * slam;
    let a = -0.059 + 0.02483 * b;
    let invalpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.gen::<f64>() - 0.5;
        let v = rng.gen::<f64>();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lam + 0.43).floor() as i64;
        if us >= 0.07 && v <= vr {
            return k;
        }
        if k < 0 || (us < 0.013 && v > us) {
            continue;
        }
        if v.ln() + invalpha.ln() - (a / (us * us) + b).ln()
            <= -lam + k as f64 * loglam - loggam(k as f64 + 1.0)
        {
            return k;
        }
    }
}

/// NumPy's `random_loggam`: log Γ(x) by Stirling's series with a shift below 7.
fn loggam(x: f64) -> f64 {
    const A: [f64; 10] = [
        8.333333333333333e-02,
        -2.777777777777778e-03,
        7.936507936507937e-04,
        -5.952380952380952e-04,
        8.417508417508418e-04,
        -1.917526917526918e-03,
        6.41025641025641e-03,
        -2.955065359477124e-02,
        1.796443723688307e-01,
        -1.3924322169059e+00,
    ];
    if x == 1.0 || x == 2.0 {
        return 0.0;
    }
    let n = if x < 7.0 { (7.0 - x) as i64 } else { 0 };
    let mut x0 = x + n as f64;
    let x2 = (1.0 / x0) * (1.0 / x0);
    let lg2pi = 1.8378770664093453e+00;
    let mut gl0 = A[9];
    for k in (0..9).rev() {
        gl0 *= x2;
        gl0 += A[k];
    }
    let mut gl = gl0 / x0 + 0.5 * lg2pi + (x0 - 0.5) * x0.ln() - x0;
    if x < 7.0 {
        for _ in 1..=n {
            gl -= (x0 - 1.0).ln();
            x0 -= 1.0;
        }
    }
    gl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggam_matches_lgamma() {
        // ln Γ(n) = ln((n-1)!) for integers; ln Γ(0.5) = ln √π.
        let mut fact = 1.0f64;
        for n in 1..30 {
            assert!((loggam(n as f64) - fact.ln()).abs() < 1e-10, "{n}");
            fact *= n as f64;
        }
        assert!((loggam(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-10);
    }

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
        // Poisson mean and variance both equal the rate, on both sides of NumPy's switch at 10.
        for lam in [0.7, 4.0, 10.0, 50.0, 450.0] {
            let ps: Vec<f64> = (0..n).map(|_| poisson(&mut rng, lam)).collect();
            let pm = ps.iter().sum::<f64>() / n as f64;
            let pv = ps.iter().map(|p| (p - pm).powi(2)).sum::<f64>() / n as f64;
            let se = (lam / n as f64).sqrt();
            assert!((pm - lam).abs() < 5.0 * se, "rate {lam}: mean {pm}");
            assert!((pv / lam - 1.0).abs() < 0.03, "rate {lam}: variance {pv}");
            assert!(ps.iter().all(|&p| p >= 0.0 && p.fract() == 0.0));
        }
        assert!((0..1000).all(|_| (-1..1).contains(&randint(&mut rng, -1, 1))));
        assert_eq!(poisson(&mut rng, 0.0), 0.0);
    }
}
