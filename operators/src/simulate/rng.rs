//! Small, stable random numbers: SplitMix64 and helpers built only from integer
//! arithmetic and IEEE basic operations (no `ln`, `exp`, `sin`…), so every platform and
//! every future `rand` release produce the same bits for the same seed.

/// The SplitMix64 increment (the golden ratio in 64 bits).
pub(super) const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
#[inline]
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `[0, 1)` from the top 53 bits of `x`.
#[inline]
pub(super) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A SplitMix64 stream: 8 bytes of state, a couple of nanoseconds per draw.
#[derive(Clone, Debug)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    #[inline]
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub(super) fn uniform(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub(super) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// True with probability `p`.
    #[inline]
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    pub(super) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Approximately standard normal: the Irwin–Hall sum of four 16-bit uniforms,
    /// rescaled to unit variance (bounded at ±3.46, which suits measurement noise).
    #[inline]
    pub(super) fn normal(&mut self) -> f64 {
        let x = self.next_u64();
        let s = (x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48);
        // Each 16-bit uniform has mean 32767.5 and variance (65536² − 1)/12.
        (s as f64 - 131_070.0) * (1.0 / 37_837.23)
    }

    /// A positive duration factor with mean 1 and a long right tail (many short uses, a
    /// few long ones), like an exponential but without `ln`.
    #[inline]
    pub(super) fn skewed(&mut self) -> f64 {
        let u = self.uniform();
        0.1 + 2.7 * u * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            s += x;
            s2 += x * x;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
    }

    #[test]
    fn skewed_has_mean_one_and_below_is_in_range() {
        let mut r = Rng::new(9);
        let n = 200_000;
        let mean = (0..n).map(|_| r.skewed()).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.01, "{mean}");
        assert!((0..1000).all(|_| r.below(3) < 3));
    }
}
