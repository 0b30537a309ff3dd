//! Seeded random-number generators shared by every crate that draws random numbers without libtorch
//! (bootstrap resampling, V-TST noise, augmentation and shuffling), so one implementation is tested.
//!
//! - SplitMix64 (Steele, Lea & Flood 2014): one mixing step, used as a seeder and as a small generator.
//! - xoshiro256++ (Blackman & Vigna 2019), its state filled by SplitMix64 as its authors recommend.

/// The SplitMix64 increment (the golden-ratio "gamma").
pub const SPLITMIX64_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// One SplitMix64 output for the state `z`: advances `z` by the gamma, then mixes it. A generator
/// whose state is `z` returns `splitmix64(z)` and moves to `z + gamma`.
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(SPLITMIX64_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ (Blackman & Vigna 2019).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// A generator whose state is four successive SplitMix64 outputs starting from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut s = [0u64; 4];
        for (k, slot) in s.iter_mut().enumerate() {
            *slot = splitmix64(seed.wrapping_add((k as u64).wrapping_mul(SPLITMIX64_GAMMA)));
        }
        Xoshiro256pp { s }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform integer in `[0, n)` (Lemire 2019, unbiased).
    pub fn below(&mut self, n: u64) -> u64 {
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence_for_seed_0() {
        // First outputs of the reference splitmix64.c seeded with 0.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(SPLITMIX64_GAMMA), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn xoshiro_is_deterministic_and_below_stays_in_range() {
        let (mut a, mut b) = (Xoshiro256pp::new(7), Xoshiro256pp::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_ne!(Xoshiro256pp::new(7), Xoshiro256pp::new(8));
    }
}
