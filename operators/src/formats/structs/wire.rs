//! Reading the numbers of a `struct` layout: wire types, byte order, and scaling by
//! `divide_by` exactly as Python divides.

use crate::formats::{MAX_EXACT_INT, bytes_at, div_exact_i64, div_exact_u64};

/// A numeric wire type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Num {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl Num {
    pub(super) fn size(self) -> usize {
        match self {
            Num::U8 | Num::I8 => 1,
            Num::U16 | Num::I16 => 2,
            Num::U32 | Num::I32 | Num::F32 => 4,
            Num::U64 | Num::I64 | Num::F64 => 8,
        }
    }

    pub(super) fn is_float(self) -> bool {
        matches!(self, Num::F32 | Num::F64)
    }

    /// The range of an integer type.
    pub(super) fn int_range(self) -> (i128, i128) {
        match self {
            Num::U8 => (0, u8::MAX.into()),
            Num::I8 => (i8::MIN.into(), i8::MAX.into()),
            Num::U16 => (0, u16::MAX.into()),
            Num::I16 => (i16::MIN.into(), i16::MAX.into()),
            Num::U32 => (0, u32::MAX.into()),
            Num::I32 => (i32::MIN.into(), i32::MAX.into()),
            Num::U64 => (0, u64::MAX.into()),
            Num::I64 | Num::F32 | Num::F64 => (i64::MIN.into(), i64::MAX.into()),
        }
    }
}

/// A number as read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Raw {
    Int(i64),
    UInt(u64),
    Float(f64),
}

/// Read a number of type `num` at `at` (the payload's length is checked first).
#[inline(always)]
pub(super) fn read(p: &[u8], at: usize, num: Num, big: bool) -> Raw {
    macro_rules! rd {
        ($t:ty) => {{
            let b = bytes_at(p, at);
            if big {
                <$t>::from_be_bytes(b)
            } else {
                <$t>::from_le_bytes(b)
            }
        }};
    }
    match num {
        Num::U8 => Raw::UInt(rd!(u8).into()),
        Num::I8 => Raw::Int(rd!(i8).into()),
        Num::U16 => Raw::UInt(rd!(u16).into()),
        Num::I16 => Raw::Int(rd!(i16).into()),
        Num::U32 => Raw::UInt(rd!(u32).into()),
        Num::I32 => Raw::Int(rd!(i32).into()),
        Num::U64 => Raw::UInt(rd!(u64)),
        Num::I64 => Raw::Int(rd!(i64)),
        Num::F32 => Raw::Float(rd!(f32).into()),
        Num::F64 => Raw::Float(rd!(f64)),
    }
}

/// How a value is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scale {
    /// Not at all.
    One,
    /// By an integral divisor in `2..=2^53`: integers divide exactly (Python `int / int`).
    Int(u64),
    /// By any other divisor (Python `int / float`: the integer is rounded to `f64` first).
    Float(f64),
}

impl Scale {
    #[inline(always)]
    pub(super) fn apply(self, raw: Raw) -> f64 {
        match (raw, self) {
            (Raw::Int(v), Scale::One) => v as f64,
            (Raw::UInt(v), Scale::One) => v as f64,
            (Raw::Float(v), Scale::One) => v,
            (Raw::Int(v), Scale::Int(d)) => div_exact_i64(v, d),
            (Raw::UInt(v), Scale::Int(d)) => div_exact_u64(v, d),
            (Raw::Float(v), Scale::Int(d)) => v / d as f64,
            (Raw::Int(v), Scale::Float(d)) => v as f64 / d,
            (Raw::UInt(v), Scale::Float(d)) => v as f64 / d,
            (Raw::Float(v), Scale::Float(d)) => v / d,
        }
    }
}

/// The [`Scale`] for a `divide_by`.
pub(super) fn scale(divide_by: Option<f64>) -> Result<Scale, String> {
    let Some(d) = divide_by else {
        return Ok(Scale::One);
    };
    if !d.is_finite() || d == 0.0 {
        return Err(format!(
            "`divide_by` must be a finite, non-zero number, not {d}"
        ));
    }
    Ok(if d == 1.0 {
        Scale::One
    } else if d.fract() == 0.0 && d > 1.0 && d <= MAX_EXACT_INT as f64 {
        Scale::Int(d as u64)
    } else {
        Scale::Float(d)
    })
}
