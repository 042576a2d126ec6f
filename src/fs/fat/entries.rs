//! FAT entries: reading and clearing 12-, 16- and 28-bit entries in a
//! buffer, and the scans a grow makes over FAT copies chunk by chunk
//! (entries past the old end, the clean-shutdown bit, allocated runs).

use super::bpb::u32_at;
use super::error::{read_vec, FatError};
use super::layout::Layout;
use super::FatType;
use crate::disk::device::Device;

/// The 28 bits of a FAT32 entry that hold the value (the top 4 are reserved).
const FAT32_ENTRY_MASK: u32 = 0x0FFF_FFFF;
/// FAT entry 1 "volume clean" bit (cleared while mounted, set on a clean
/// unmount): FAT16 and FAT32 only.
const FAT16_CLEAN_SHUTDOWN: u32 = 0x8000;
const FAT32_CLEAN_SHUTDOWN: u32 = 0x0800_0000;
/// Entries handled per FAT chunk (a multiple of 8, so that FAT12 chunks start
/// on a byte boundary).
const CHUNK_ENTRIES: u64 = 256 * 1024;
/// Free clusters that may separate two allocated runs and still be moved as
/// one (fewer, larger copies).
const RUN_MERGE_GAP_CLUSTERS: u64 = 16;

/// Reads FAT entry `n` of a buffer that starts at entry `base` (a multiple
/// of 8).
pub(super) fn entry_get(buf: &[u8], base: u64, n: u64, t: FatType) -> Option<u32> {
    let rel = usize::try_from(n.checked_sub(base)?).ok()?;
    match t {
        FatType::Fat12 => {
            let at = rel * 3 / 2;
            let w = u16::from_le_bytes([*buf.get(at)?, *buf.get(at + 1)?]);
            Some(u32::from(if rel % 2 == 0 { w & 0x0FFF } else { w >> 4 }))
        }
        FatType::Fat16 => {
            let at = rel * 2;
            Some(u32::from(u16::from_le_bytes([
                *buf.get(at)?,
                *buf.get(at + 1)?,
            ])))
        }
        FatType::Fat32 => {
            let at = rel * 4;
            let b = buf.get(at..at + 4)?;
            Some(u32_at(b, 0) & FAT32_ENTRY_MASK)
        }
    }
}

/// Marks entry `n` free (the reserved top bits of a FAT32 entry are kept).
pub(super) fn entry_clear(buf: &mut [u8], base: u64, n: u64, t: FatType) {
    let Some(rel) = n.checked_sub(base).and_then(|r| usize::try_from(r).ok()) else {
        return;
    };
    match t {
        FatType::Fat12 => {
            let at = rel * 3 / 2;
            if let Some(b) = buf.get_mut(at..at + 2) {
                let w = u16::from_le_bytes([b[0], b[1]]);
                let w = if rel % 2 == 0 { w & 0xF000 } else { w & 0x000F };
                b.copy_from_slice(&w.to_le_bytes());
            }
        }
        FatType::Fat16 => {
            if let Some(b) = buf.get_mut(rel * 2..rel * 2 + 2) {
                b.fill(0);
            }
        }
        FatType::Fat32 => {
            if let Some(b) = buf.get_mut(rel * 4..rel * 4 + 4) {
                let v = u32_at(b, 0) & !FAT32_ENTRY_MASK;
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// Byte offset of entry `n` (a multiple of 8) inside a FAT.
pub(super) fn entry_byte(n: u64, t: FatType) -> u64 {
    n * t.entry_bits() / 8
}

/// Reads entries `first..end` of FAT copy `copy` chunk by chunk, calling
/// `f(buffer, base_entry, entries)` for each chunk.
pub(super) fn for_each_chunk(
    dev: &dyn Device,
    l: &Layout,
    copy: u64,
    first: u64,
    end: u64,
    mut f: impl FnMut(&mut Vec<u8>, u64, u64, u64) -> Result<(), FatError>,
) -> Result<(), FatError> {
    let fat_bytes = l.fat_size * l.bps;
    let mut base = first / 8 * 8;
    while base < end {
        let stop = (base + CHUNK_ENTRIES).min(end);
        let start_byte = entry_byte(base, l.fat_type);
        let stop_byte = entry_byte(stop.div_ceil(8) * 8, l.fat_type).min(fat_bytes);
        let at = l.fat_offset(copy, l.fat_size) + start_byte;
        let mut buf = read_vec(dev, at, stop_byte.saturating_sub(start_byte), "FAT")?;
        f(&mut buf, base, stop, at)?;
        base = stop.div_ceil(8) * 8;
    }
    Ok(())
}

/// Writes that mark entries `first..end` free in every FAT copy, for copies
/// where any of them is not (mkfs zeroes the whole FAT, so normally none).
pub(super) fn clear_entries(
    dev: &dyn Device,
    l: &Layout,
    first: u64,
    end: u64,
    writes: &mut Vec<(u64, Vec<u8>)>,
) -> Result<u64, FatError> {
    let mut cleared = 0;
    for copy in 0..l.num_fats {
        for_each_chunk(dev, l, copy, first, end, |buf, base, stop, at| {
            let mut changed = false;
            for n in first.max(base)..stop {
                if entry_get(buf, base, n, l.fat_type).unwrap_or(0) != 0 {
                    entry_clear(buf, base, n, l.fat_type);
                    changed = true;
                    cleared += 1;
                }
            }
            if changed {
                writes.push((at, std::mem::take(buf)));
            }
            Ok(())
        })?;
    }
    Ok(cleared)
}

/// The clean-shutdown bit of FAT entry 1 (always "clean" on FAT12, which
/// has none).
pub(super) fn volume_clean(dev: &dyn Device, l: &Layout) -> Result<bool, FatError> {
    let mask = match l.fat_type {
        FatType::Fat12 => return Ok(true),
        FatType::Fat16 => FAT16_CLEAN_SHUTDOWN,
        FatType::Fat32 => FAT32_CLEAN_SHUTDOWN,
    };
    let mut clean = true;
    for_each_chunk(dev, l, 0, 1, 2, |buf, base, _, _| {
        clean = entry_get(buf, base, 1, l.fat_type).is_some_and(|v| v & mask != 0);
        Ok(())
    })?;
    Ok(clean)
}

/// Runs `(first_cluster, count)` of allocated clusters in FAT copy 0,
/// neighbouring runs merged across small gaps.
pub(super) fn allocated_runs(dev: &dyn Device, l: &Layout) -> Result<Vec<(u64, u64)>, FatError> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let end = l.clusters() + 2;
    for_each_chunk(dev, l, 0, 2, end, |buf, base, stop, _| {
        for n in 2.max(base)..stop {
            if entry_get(buf, base, n, l.fat_type).unwrap_or(0) == 0 {
                continue;
            }
            match runs.last_mut() {
                Some((s, c)) if n <= *s + *c + RUN_MERGE_GAP_CLUSTERS => *c = n - *s + 1,
                _ => runs.push((n, 1)),
            }
        }
        Ok(())
    })?;
    Ok(runs)
}
