//! Free clusters of FAT12/16/32, from the first FAT.
//!
//! A cluster whose entry in FAT 1 is zero is free; everything else (the
//! reserved area, every FAT copy, the FAT12/16 root directory, clusters in
//! use, bad clusters, the sectors past the last whole cluster) is in use.
//! [`FreeSpace::validate`] reads the FATs once and refuses a volume whose
//! copies disagree, or that is marked dirty (FAT entry 1's clean-shutdown
//! bit cleared, or the boot sector's dirty flag set): its FAT may be stale.

use super::{push_run, read, FreeSpace, Run, UsageError};
use crate::disk::device::{Device, DeviceError};
use crate::fs::fat::{FatError, FatInfo};

/// Entries read per step when streaming a FAT (a multiple of 2, so that
/// FAT12 steps start on a byte boundary).
const CHUNK_ENTRIES: u64 = 1 << 16;
/// First data cluster number.
const FIRST_CLUSTER: u64 = 2;
/// FAT entry 1's clean-shutdown bit.
const FAT16_CLEAN: u32 = 0x8000;
const FAT32_CLEAN: u32 = 0x0800_0000;
const FAT32_ENTRY_MASK: u32 = 0x0FFF_FFFF;
/// The boot sector's "state" byte (BS_Reserved1, Windows' dirty flags) for
/// FAT12/16 and FAT32, and its dirty bit.
const BS_STATE_16: usize = 0x25;
const BS_STATE_32: usize = 0x41;
const STATE_DIRTY: u8 = 0x01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Width {
    Fat12,
    Fat16,
    Fat32,
}

impl Width {
    /// Byte range of entries `first..end` in a FAT.
    fn bytes(self, first: u64, end: u64) -> (u64, u64) {
        match self {
            Width::Fat12 => (first * 3 / 2, (end * 3).div_ceil(2)),
            Width::Fat16 => (first * 2, end * 2),
            Width::Fat32 => (first * 4, end * 4),
        }
    }

    /// Entry `n` of a buffer holding the FAT bytes from entry `base` on
    /// (`base` even).
    fn entry(self, buf: &[u8], base: u64, n: u64) -> Option<u32> {
        let rel = usize::try_from(n.checked_sub(base)?).ok()?;
        let b = |i: usize| buf.get(i).copied().map(u32::from);
        match self {
            Width::Fat12 => {
                let at = rel * 3 / 2;
                let w = b(at)? | b(at + 1)? << 8;
                Some(if rel % 2 == 0 { w & 0x0FFF } else { w >> 4 })
            }
            Width::Fat16 => Some(b(rel * 2)? | b(rel * 2 + 1)? << 8),
            Width::Fat32 => {
                let at = rel * 4;
                Some(
                    (b(at)? | b(at + 1)? << 8 | b(at + 2)? << 16 | b(at + 3)? << 24)
                        & FAT32_ENTRY_MASK,
                )
            }
        }
    }
}

/// A FAT volume whose layout has been read.
pub struct FatFree {
    info: FatInfo,
    width: Width,
    bytes_per_sector: u64,
    cluster_bytes: u64,
    data_start: u64,
    clusters: u64,
}

/// Reads a FAT volume at the start of `dev`: `None` without a FAT boot
/// sector; an error when its layout does not add up or it is dirty.
pub fn open(dev: &dyn Device) -> Result<Option<FatFree>, UsageError> {
    let info = match crate::fs::fat::probe(dev) {
        Ok(Some(info)) => info,
        Ok(None) | Err(FatError::NotFat) => return Ok(None),
        Err(FatError::Device(DeviceError::Corrupt(e))) => {
            return Err(UsageError::Corrupt {
                structure: e.structure,
                field: e.field,
                offset: e.offset,
                found: e.found,
                expected: e.expected,
            })
        }
        Err(e) => return Err(UsageError::unsupported(e.to_string())),
    };
    let width = match info.fat_type {
        "FAT12" => Width::Fat12,
        "FAT16" => Width::Fat16,
        _ => Width::Fat32,
    };
    let bps = u64::from(info.bytes_per_sector);
    let cluster_bytes = bps * u64::from(info.sectors_per_cluster);
    if cluster_bytes == 0 {
        return Err(UsageError::corrupt(
            "FAT boot sector",
            "BPB_SecPerClus",
            0x0D,
            info.sectors_per_cluster,
            "a power of two",
        ));
    }
    let clusters = u64::from(info.cluster_count);
    let data_start = info.data_start_sector * bps;
    let end = data_start.saturating_add(clusters.saturating_mul(cluster_bytes));
    if end > dev.size_bytes() {
        return Err(UsageError::corrupt(
            "FAT boot sector",
            "BPB_TotSec",
            0x13,
            info.total_sectors,
            format!("a volume inside the partition's {} bytes", dev.size_bytes()),
        ));
    }
    let fat = FatFree {
        info,
        width,
        bytes_per_sector: bps,
        cluster_bytes,
        data_start,
        clusters,
    };
    fat.check_clean(dev)?;
    Ok(Some(fat))
}

impl FatFree {
    fn fat_offset(&self, copy: u64) -> u64 {
        (u64::from(self.info.reserved_sectors) + copy * u64::from(self.info.fat_size_sectors))
            * self.bytes_per_sector
    }

    /// FAT copy `copy`'s bytes for entries `first..end` (`first` even),
    /// read from the device.
    fn entries(
        &self,
        dev: &dyn Device,
        copy: u64,
        first: u64,
        end: u64,
    ) -> Result<Vec<u8>, UsageError> {
        let (from, to) = self.width.bytes(first, end);
        let fat_bytes = u64::from(self.info.fat_size_sectors) * self.bytes_per_sector;
        if to > fat_bytes {
            return Err(UsageError::corrupt(
                "FAT",
                "BPB_FATSz",
                0x16,
                self.info.fat_size_sectors,
                format!("room for {end} entries"),
            ));
        }
        let len = usize::try_from(to - from).map_err(|_| UsageError::unsupported("a FAT chunk"))?;
        read(dev, self.fat_offset(copy) + from, len, "the FAT")
    }

    /// Refuses a volume marked dirty, the way Windows and Linux mark it.
    fn check_clean(&self, dev: &dyn Device) -> Result<(), UsageError> {
        let boot = read(dev, 0, 512, "the FAT boot sector")?;
        let state_at = if self.width == Width::Fat32 {
            BS_STATE_32
        } else {
            BS_STATE_16
        };
        if boot.get(state_at).is_some_and(|s| s & STATE_DIRTY != 0) {
            return Err(UsageError::unclean(
                "the volume is marked dirty (boot sector state): run fsck.fat",
            ));
        }
        let head = self.entries(dev, 0, 0, 2)?;
        let e1 = self.width.entry(&head, 0, 1).unwrap_or(0);
        let clean = match self.width {
            Width::Fat12 => true,
            Width::Fat16 => e1 & FAT16_CLEAN != 0,
            Width::Fat32 => e1 & FAT32_CLEAN != 0,
        };
        if !clean {
            return Err(UsageError::unclean(
                "the volume was not cleanly unmounted (FAT entry 1): run fsck.fat",
            ));
        }
        Ok(())
    }

    fn cluster_start(&self, n: u64) -> u64 {
        self.data_start + (n - FIRST_CLUSTER) * self.cluster_bytes
    }
}

impl FreeSpace for FatFree {
    fn name(&self) -> &'static str {
        match self.width {
            Width::Fat12 => "fat12",
            Width::Fat16 => "fat16",
            Width::Fat32 => "fat32",
        }
    }

    fn size_bytes(&self) -> u64 {
        self.info.total_sectors * self.bytes_per_sector
    }

    fn free_runs(
        &self,
        dev: &dyn Device,
        start: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        let data_end = self.cluster_start(FIRST_CLUSTER + self.clusters);
        let from = start.max(self.data_start);
        let to = start.saturating_add(len).min(data_end);
        if to <= from {
            return Ok(());
        }
        let first = FIRST_CLUSTER + (from - self.data_start) / self.cluster_bytes;
        let end = FIRST_CLUSTER + (to - self.data_start).div_ceil(self.cluster_bytes);
        let base = first / 2 * 2;
        let mut at = base;
        while at < end {
            let stop = (at + CHUNK_ENTRIES).min(end);
            let buf = self.entries(dev, 0, at, stop)?;
            for n in at.max(first)..stop {
                if self.width.entry(&buf, at, n) == Some(0) {
                    let c = self.cluster_start(n);
                    let lo = c.max(from);
                    let hi = (c + self.cluster_bytes).min(to);
                    push_run(out, (lo, hi - lo));
                }
            }
            at = stop;
        }
        Ok(())
    }

    fn validate(&self, dev: &dyn Device) -> Result<u64, UsageError> {
        let end = FIRST_CLUSTER + self.clusters;
        let mut free = 0u64;
        let mut at = 0;
        while at < end {
            let stop = (at + CHUNK_ENTRIES).min(end);
            let first = self.entries(dev, 0, at, stop)?;
            for copy in 1..u64::from(self.info.num_fats) {
                let other = self.entries(dev, copy, at, stop)?;
                // Entries 0 and 1 (media byte, dirty flags) may differ.
                let skip = if at == 0 { self.width.bytes(0, 2).1 } else { 0 };
                let skip = usize::try_from(skip).unwrap_or(0);
                if first.get(skip..) != other.get(skip..) {
                    return Err(UsageError::unclean(format!(
                        "FAT copies 1 and {} differ between clusters {at} and {stop}: run fsck.fat",
                        copy + 1
                    )));
                }
            }
            free += (at.max(FIRST_CLUSTER)..stop)
                .filter(|&n| self.width.entry(&first, at, n) == Some(0))
                .count() as u64;
            at = stop;
        }
        Ok(free * self.cluster_bytes)
    }
}
