//! Dequantisation of GGUF tensor data to f32.
//!
//! Written here because no crate on crates.io that fits this workspace implements the K-quants
//! (`ggml-quants` 0.1 leaves them as panicking placeholders; candle's implementation comes with all of
//! candle-core). The block layouts follow ggml's (`ggml-common.h`, `ggml-quants.c`); every block
//! is little-endian, and values come out in the order they are stored.

use half::{bf16, f16};

/// The GGUF tensor types this crate dequantises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit floats.
    F32,
    /// IEEE half floats.
    F16,
    /// bfloat16 (the upper half of an f32).
    BF16,
    /// Blocks of 32: an f16 scale `d` and 32 signed bytes; `x = d * q`.
    Q8_0,
    /// Blocks of 32: an f16 scale `d` and 16 bytes of nibbles; `x = d * (q - 8)`. Byte `j`
    /// holds element `j` in its low nibble and element `j + 16` in its high one.
    Q4_0,
    /// Blocks of 32: f16 `d` and `m`, then nibbles as [`Q4_0`](Self::Q4_0); `x = d * q + m`.
    Q4_1,
    /// Super-blocks of 256: f16 `d` and `dmin`, 12 bytes packing eight 6-bit scales and eight
    /// 6-bit mins (one pair per 32 values), 128 bytes of nibbles;
    /// `x = d * scale * q - dmin * min`.
    Q4K,
    /// Super-blocks of 256: as [`Q4K`](Self::Q4K) plus 32 bytes holding the fifth bit of each
    /// value; `q` runs from 0 to 31.
    Q5K,
    /// Super-blocks of 256: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, sixteen
    /// signed 8-bit scales (one per 16 values), an f16 `d`; `x = d * scale * (q - 32)`.
    Q6K,
}

/// Every type of [`GgmlType`], in ggml's numbering order.
pub const SUPPORTED_GGML_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::BF16,
];

impl GgmlType {
    /// The type of ggml's type id (`ggml_type`), if this crate dequantises it.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    /// ggml's name of the type (`Q4_K`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }

    /// Number of values in one block (1 for the float types).
    pub fn block_values(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Number of bytes of one block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q8_0 => 34,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Bytes that `values` values take, or `None` when `values` is not a whole number of
    /// blocks (or overflows).
    pub fn data_bytes(self, values: usize) -> Option<usize> {
        if !values.is_multiple_of(self.block_values()) {
            return None;
        }
        (values / self.block_values()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Dequantises `values` values of type `kind` from `bytes`.
///
/// # Errors
///
/// A description when `values` is not a whole number of blocks or `bytes` has another length
/// than those blocks take.
pub fn dequantize(kind: GgmlType, bytes: &[u8], values: usize) -> Result<Vec<f32>, String> {
    let Some(expected) = kind.data_bytes(values) else {
        return Err(format!(
            "{values} values are not a whole number of {kind} blocks of {}",
            kind.block_values()
        ));
    };
    if bytes.len() != expected {
        return Err(format!(
            "{values} values of {kind} take {expected} bytes, but {} were given",
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(values);
    let blocks = bytes.chunks_exact(kind.block_bytes());
    match kind {
        GgmlType::F32 => {
            out.extend(blocks.map(|b| f32::from_le_bytes(b.try_into().expect("4-byte chunk"))))
        }
        GgmlType::F16 => out.extend(blocks.map(|b| half_at(b, 0))),
        GgmlType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgmlType::Q8_0 => blocks.for_each(|b| q8_0(b, &mut out)),
        GgmlType::Q4_0 => blocks.for_each(|b| q4_0(b, &mut out)),
        GgmlType::Q4_1 => blocks.for_each(|b| q4_1(b, &mut out)),
        GgmlType::Q4K => blocks.for_each(|b| q4_k(b, &mut out)),
        GgmlType::Q5K => blocks.for_each(|b| q5_k(b, &mut out)),
        GgmlType::Q6K => blocks.for_each(|b| q6_k(b, &mut out)),
    }
    Ok(out)
}

/// The little-endian f16 at `offset` of `block`, as f32.
fn half_at(block: &[u8], offset: usize) -> f32 {
    f16::from_le_bytes([block[offset], block[offset + 1]]).to_f32()
}

fn q8_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 0);
    out.extend(block[2..34].iter().map(|&q| d * f32::from(q as i8)));
}

fn q4_0(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 0);
    let nibbles = &block[2..18];
    out.extend(nibbles.iter().map(|&q| d * (f32::from(q & 0x0F) - 8.0)));
    out.extend(nibbles.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
}

fn q4_1(block: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (half_at(block, 0), half_at(block, 2));
    let nibbles = &block[4..20];
    out.extend(nibbles.iter().map(|&q| d * f32::from(q & 0x0F) + m));
    out.extend(nibbles.iter().map(|&q| d * f32::from(q >> 4) + m));
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K or Q5_K
/// super-block: sub-blocks 0..4 take the low six bits of bytes `j` (scale) and `j + 4` (min);
/// sub-blocks 4..8 take a nibble of byte `j + 4` and the top two bits of bytes `j - 4` (scale)
/// and `j` (min).
fn scale_min(packed: &[u8], j: usize) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (packed[j] & 0x3F, packed[j + 4] & 0x3F)
    } else {
        (
            (packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    };
    (f32::from(scale), f32::from(min))
}

fn q4_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let packed = &block[4..16];
    let nibbles = &block[16..144];
    // Four groups of 64 values; each group's 32 bytes give 32 values by their low nibbles
    // (sub-block 2g), then 32 by their high nibbles (sub-block 2g + 1).
    for (group, bytes) in nibbles.chunks_exact(32).enumerate() {
        let (sc_lo, m_lo) = scale_min(packed, 2 * group);
        let (sc_hi, m_hi) = scale_min(packed, 2 * group + 1);
        let (d_lo, min_lo) = (d * sc_lo, dmin * m_lo);
        let (d_hi, min_hi) = (d * sc_hi, dmin * m_hi);
        out.extend(bytes.iter().map(|&q| d_lo * f32::from(q & 0x0F) - min_lo));
        out.extend(bytes.iter().map(|&q| d_hi * f32::from(q >> 4) - min_hi));
    }
}

fn q5_k(block: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (half_at(block, 0), half_at(block, 2));
    let packed = &block[4..16];
    let high = &block[16..48];
    let nibbles = &block[48..176];
    // As Q4_K; sub-block s takes its fifth bits from bit s of the 32 `high` bytes.
    for (group, bytes) in nibbles.chunks_exact(32).enumerate() {
        let (lo, hi) = (2 * group, 2 * group + 1);
        let (sc_lo, m_lo) = scale_min(packed, lo);
        let (sc_hi, m_hi) = scale_min(packed, hi);
        let (d_lo, min_lo) = (d * sc_lo, dmin * m_lo);
        let (d_hi, min_hi) = (d * sc_hi, dmin * m_hi);
        let fifth = |l: usize, bit: usize| if (high[l] >> bit) & 1 == 1 { 16 } else { 0 };
        out.extend(
            bytes
                .iter()
                .enumerate()
                .map(|(l, &q)| d_lo * f32::from((q & 0x0F) + fifth(l, lo)) - min_lo),
        );
        out.extend(
            bytes
                .iter()
                .enumerate()
                .map(|(l, &q)| d_hi * f32::from((q >> 4) + fifth(l, hi)) - min_hi),
        );
    }
}

// The indices are the block layout's; iterators would hide it.
#[allow(clippy::needless_range_loop)]
fn q6_k(block: &[u8], out: &mut Vec<f32>) {
    let low = &block[0..128];
    let high = &block[128..192];
    let scales = &block[192..208];
    let d = half_at(block, 208);
    let start = out.len();
    out.resize(start + 256, 0.0);
    let values = &mut out[start..];
    // Two halves of 128 values; in each, 64 low-nibble bytes, 32 high-bit bytes and 8 scales.
    // Value l + 32k (k in 0..4) of a half takes the nibble of byte l (k even) or l + 32 (k odd),
    // low for k < 2 and high otherwise, and bits 2k..2k+2 of high byte l; its scale is
    // number l / 16 + 2k.
    for half in 0..2 {
        let low = &low[64 * half..64 * half + 64];
        let high = &high[32 * half..32 * half + 32];
        let scales = &scales[8 * half..8 * half + 8];
        let values = &mut values[128 * half..128 * half + 128];
        for l in 0..32 {
            let nibbles = [
                low[l] & 0x0F,
                low[l + 32] & 0x0F,
                low[l] >> 4,
                low[l + 32] >> 4,
            ];
            for (k, nibble) in nibbles.into_iter().enumerate() {
                let q = i32::from(nibble | (((high[l] >> (2 * k)) & 0x03) << 4)) - 32;
                let scale = f32::from(scales[l / 16 + 2 * k] as i8);
                values[l + 32 * k] = d * scale * q as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_block_layouts() {
        for &kind in SUPPORTED_GGML_TYPES {
            let values = kind.block_values() * 3;
            let bytes = vec![0u8; kind.data_bytes(values).unwrap()];
            assert_eq!(dequantize(kind, &bytes, values).unwrap().len(), values);
            assert!(dequantize(kind, &bytes[1..], values).is_err());
        }
        assert!(GgmlType::Q4K.data_bytes(255).is_none());
    }
}
