//! The libraries' split comparisons restated as one f64 `value <= threshold`: XGBoost
//! compares in f32 (`x as f32 < t`) and LightGBM rounds inputs near zero to zero first.
//!
//! The parsers fold their thresholds with these, the converter writes them, and the
//! compact layout (`complete.rs`) inverts the XGBoost fold; they are exact arithmetic
//! with no tie to either layout, so every user depends on this module and not on another.

/// LightGBM's `kZeroThreshold` (`1e-35f`, a float widened to double): inputs whose
/// magnitude is at most this count as zero.
pub(crate) const LIGHTGBM_ZERO: f64 = 1e-35_f32 as f64;

/// The f64 threshold `t64` for which `x <= t64` (in f64) holds exactly when XGBoost's
/// `(x as f32) < t` holds: the boundary is the midpoint between `t` and the f32 below
/// it, and a row exactly at the midpoint rounds (to even) to one side or the other.
pub(crate) fn f32_less_than_as_f64_le(t: f32) -> f64 {
    if !t.is_finite() {
        // XGBoost never writes such thresholds; keep the comparison sensible
        return if t == f32::INFINITY {
            f64::MAX
        } else {
            f64::NEG_INFINITY
        };
    }
    let below = t.next_down();
    if below == f32::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let mid = (f64::from(below) + f64::from(t)) / 2.0;
    // the midpoint rounds to whichever neighbour has an even significand
    if below.to_bits() & 1 == 0 {
        mid
    } else {
        mid.next_down()
    }
}

/// Fold LightGBM's input rule (values within `LIGHTGBM_ZERO` of zero become 0) into a
/// numeric threshold, so that comparing the raw value gives LightGBM's answer.
pub(crate) fn lightgbm_threshold(t: f64) -> f64 {
    if t.abs() < LIGHTGBM_ZERO || t == -LIGHTGBM_ZERO {
        if t >= 0.0 {
            LIGHTGBM_ZERO
        } else {
            (-LIGHTGBM_ZERO).next_down()
        }
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::xorshift;

    #[test]
    fn f32_threshold_fold_matches_f32_comparison() {
        let mut next = xorshift(0x9e3779b97f4a7c15_u64);
        for _ in 0..20_000 {
            let t = f32::from_bits(next() as u32);
            if !t.is_finite() {
                continue;
            }
            let t64 = f32_less_than_as_f64_le(t);
            let below = f64::from(t.next_down());
            let mid = (below + f64::from(t)) / 2.0;
            // probe around the boundary and the threshold itself
            for x in [
                mid,
                mid.next_down(),
                mid.next_up(),
                f64::from(t),
                f64::from(t).next_down(),
                f64::from(t).next_up(),
                below,
            ] {
                assert_eq!((x as f32) < t, x <= t64, "t={t:e} x={x:e} (t64={t64:e})");
            }
        }
    }

    #[test]
    fn lightgbm_zero_band_fold() {
        for t in [0.0, 1e-40, -1e-40, -LIGHTGBM_ZERO, LIGHTGBM_ZERO, -0.5, 0.5] {
            let folded = lightgbm_threshold(t);
            for x in [
                0.0,
                1e-36,
                -1e-36,
                LIGHTGBM_ZERO,
                -LIGHTGBM_ZERO,
                1e-30,
                -1e-30,
            ] {
                let lightgbm = if x.abs() <= LIGHTGBM_ZERO { 0.0 } else { x };
                assert_eq!(lightgbm <= t, x <= folded, "t={t:e} x={x:e}");
            }
        }
    }
}
