//! The household's day: how busy it is, how cold and how sunny at each hour. Smooth
//! curves of the hour alone, with no state and no randomness.
//!
//! Separate from the state machine because they are pure functions of the clock that
//! the parameters (`Profile`) and the per-second update both read.

/// A raised-cosine-like bump (smoothstep polynomial, no `cos`): 1 at `center`, falling to
/// 0 at `half_width` hours away, measured around the 24-hour clock.
pub(super) fn bump(hour: f64, center: f64, half_width: f64) -> f64 {
    let mut d = (hour - center).abs() % 24.0;
    if d > 12.0 {
        d = 24.0 - d;
    }
    if d >= half_width {
        return 0.0;
    }
    let x = d / half_width;
    1.0 - x * x * (3.0 - 2.0 * x)
}

/// How busy the household is at an hour: night base, morning, midday and evening peaks.
#[derive(Clone, Debug)]
pub(super) struct Profile {
    pub(super) night: f64,
    pub(super) morning: f64,
    pub(super) midday: f64,
    pub(super) evening: f64,
    /// Hours the household's routine runs early (<0) or late (>0).
    pub(super) shift: f64,
    /// Hour at which an electric car usually comes home.
    pub(super) ev_home: f64,
}

impl Profile {
    pub(super) fn activity(&self, h: f64) -> f64 {
        self.night
            + self.morning * bump(h, 7.0 + self.shift, 2.0)
            + self.midday * bump(h, 12.5 + self.shift, 3.5)
            + self.evening * bump(h, 19.5 + self.shift, 3.5)
    }
}

/// Heating demand over the day: 1 in the small hours, 0 mid-afternoon.
pub(super) fn cold(h: f64) -> f64 {
    bump(h, 4.0, 12.0)
}

/// Clear-sky solar output over the day, `[0, 1]`, peaking at 13:00.
pub(super) fn sun(h: f64) -> f64 {
    let x = (h - 6.5) / 13.0;
    if x <= 0.0 || x >= 1.0 {
        return 0.0;
    }
    let s = 4.0 * x * (1.0 - x);
    s * s.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_wraps_around_midnight() {
        assert_eq!(bump(7.0, 7.0, 2.0), 1.0);
        assert_eq!(bump(9.0, 7.0, 2.0), 0.0);
        assert!((bump(23.5, 0.5, 2.0) - 0.5).abs() < 1e-12);
        assert!((bump(0.5, 23.5, 2.0) - 0.5).abs() < 1e-12);
        assert_eq!(cold(4.0), 1.0);
        assert_eq!(cold(16.0), 0.0);
        assert_eq!(sun(3.0), 0.0);
        assert_eq!(sun(13.0), 1.0);
    }
}
