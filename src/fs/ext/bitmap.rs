//! Bit access to ext bitmaps (bit `n` of byte `n / 8`, least significant
//! first), out-of-range indexes ignored rather than panicking.

pub fn bit(bitmap: &[u8], index: u64) -> bool {
    usize::try_from(index / 8)
        .ok()
        .and_then(|i| bitmap.get(i))
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

/// Sets (or clears) bits `start..start + len`, whole bytes at a time where
/// it can.
pub fn set_range(bitmap: &mut [u8], start: u64, len: u64, value: bool) {
    let bits = u64::try_from(bitmap.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(8);
    let end = start.saturating_add(len).min(bits);
    let mut b = start;
    while b < end {
        let Some(slot) = usize::try_from(b / 8).ok().and_then(|i| bitmap.get_mut(i)) else {
            return;
        };
        if b % 8 == 0 && end - b >= 8 {
            *slot = if value { 0xFF } else { 0 };
            b += 8;
        } else {
            let mask = 1u8 << (b % 8);
            *slot = if value { *slot | mask } else { *slot & !mask };
            b += 1;
        }
    }
}

/// Bits set among the first `len`.
pub fn count_set(bitmap: &[u8], len: u64) -> u64 {
    (0..len).filter(|&b| bit(bitmap, b)).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cross_byte_edges() {
        let mut bm = [0u8; 4];
        set_range(&mut bm, 3, 14, true);
        assert_eq!(bm, [0xF8, 0xFF, 0x01, 0]);
        assert_eq!(count_set(&bm, 32), 14);
        set_range(&mut bm, 8, 8, false);
        assert_eq!(bm, [0xF8, 0, 0x01, 0]);
        assert!(bit(&bm, 16) && !bit(&bm, 17) && !bit(&bm, 999));
        set_range(&mut bm, 30, 100, true);
        assert_eq!(bm[3], 0xC0);
    }
}
