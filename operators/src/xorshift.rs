//! A deterministic random generator for the tests of several modules (shuffled times,
//! colliding ids), with no dependency: here so that no test module borrows it from
//! another.

/// A xorshift64 generator seeded with `state` (which must not be 0).
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
