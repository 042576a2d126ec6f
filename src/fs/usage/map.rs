//! A whole disk laid out into regions, each free, read by a filesystem
//! reader, or kept exactly as it is (with the reason).
//!
//! - MBR: sector 0 up to the first partition is kept (boot loaders such as
//!   GRUB live in that gap, where no table says so); every primary and
//!   logical partition is a region; the parts of an extended partition no
//!   logical partition covers (its EBRs) are kept; space outside every
//!   partition is free.
//! - GPT: the protective MBR, headers and entry arrays up to the first
//!   usable LBA and from the last usable LBA on are kept; partitions are
//!   regions; usable space no entry covers is free.
//! - No table: one region, the whole disk, read as a bare filesystem.
//!
//! Inside a partition only the filesystem's own free bytes are free; the
//! part of a partition past the end of its filesystem is kept. Partitions
//! that overlap each other make the whole disk kept: no byte is dropped on
//! one table entry's word when another claims it.

use serde::Serialize;

use super::{ext, fat, ntfs, swap, FreeSpace, Run, UsageError, Window};
use crate::disk::VirtualDisk;
use crate::fs::detect::{detect, FsKind};
use crate::partition::{
    read_table, PartitionInfo, PartitionRole, Table, TableKind, SECTOR_BYTES, SECTOR_SIZE,
};

const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// What a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// A partition (or the whole disk for a bare filesystem).
    Partition,
    /// The partition table's own sectors (and, on MBR, the boot loader gap).
    Table,
    /// Parts of an extended partition outside its logical partitions.
    Extended,
    /// Space no partition covers.
    Gap,
}

/// What sparsify does with a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionState {
    /// Every byte is free (a gap the table says nothing lives in).
    Free,
    /// A filesystem's free bytes are free; the rest is kept.
    Read,
    /// Kept exactly as it is.
    Kept,
}

/// One region of the disk.
#[derive(Serialize)]
pub struct Region {
    pub kind: RegionKind,
    /// The partition number (Linux numbering), for partitions.
    pub number: Option<u32>,
    pub start: u64,
    pub len: u64,
    /// "ext4", "fat32", "ntfs", "swap", "xfs", "btrfs", "lvm2", "luks", "unknown".
    pub filesystem: Option<String>,
    pub state: RegionState,
    /// Why a region is kept.
    pub reason: Option<String>,
    /// Bytes the filesystem spans (partitions read).
    pub filesystem_bytes: Option<u64>,
    /// Bytes free: the filesystem's free space, or the whole gap.
    pub free_bytes: u64,
    /// Bytes in use (the region less its free bytes).
    pub used_bytes: u64,
    /// Free bytes that hold data in the input (non-zero 512-byte sectors),
    /// which the output reads as zero; filled by [`DiskMap::measure_dropped`].
    pub dropped_bytes: u64,
    #[serde(skip)]
    fs: Option<Box<dyn FreeSpace>>,
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("kind", &self.kind)
            .field("number", &self.number)
            .field("start", &self.start)
            .field("len", &self.len)
            .field("filesystem", &self.filesystem)
            .field("state", &self.state)
            .field("reason", &self.reason)
            .field("free_bytes", &self.free_bytes)
            .finish()
    }
}

impl Region {
    fn new(kind: RegionKind, start: u64, len: u64, state: RegionState) -> Region {
        Region {
            kind,
            number: None,
            start,
            len,
            filesystem: None,
            state,
            reason: None,
            filesystem_bytes: None,
            free_bytes: if state == RegionState::Free { len } else { 0 },
            used_bytes: if state == RegionState::Free { 0 } else { len },
            dropped_bytes: 0,
            fs: None,
        }
    }

    fn kept(kind: RegionKind, start: u64, len: u64, reason: impl Into<String>) -> Region {
        let mut r = Region::new(kind, start, len, RegionState::Kept);
        r.reason = Some(reason.into());
        r
    }

    /// Free runs of this region inside `offset..offset + len` (absolute).
    fn free_runs(
        &self,
        disk: &dyn VirtualDisk,
        offset: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        match (self.state, &self.fs) {
            (RegionState::Free, _) => {
                super::push_clipped(out, self.start, self.len, offset, len);
                Ok(())
            }
            (RegionState::Read, Some(fs)) => {
                let window = Window::new(disk, self.start, self.len)
                    .ok_or_else(|| UsageError::unsupported("a region past the disk's end"))?;
                let from = offset.max(self.start);
                let to = offset.saturating_add(len).min(self.start + self.len);
                if to <= from {
                    return Ok(());
                }
                let mut runs = Vec::new();
                fs.free_runs(&window, from - self.start, to - from, &mut runs)?;
                for (o, l) in runs {
                    super::push_run(out, (o + self.start, l));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A disk laid out into regions, in order, covering it without overlap.
#[derive(Debug, Serialize)]
pub struct DiskMap {
    /// `mbr`, `gpt` or `none`.
    pub table: TableKind,
    pub size_bytes: u64,
    pub regions: Vec<Region>,
}

impl DiskMap {
    /// Appends the free runs inside `offset..offset + len`, ascending.
    pub fn free_runs(
        &self,
        disk: &dyn VirtualDisk,
        offset: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        let end = offset.saturating_add(len);
        let first = self.regions.partition_point(|r| r.start + r.len <= offset);
        for r in self.regions[first..].iter().take_while(|r| r.start < end) {
            r.free_runs(disk, offset, len, out)?;
        }
        Ok(())
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.free_bytes).sum()
    }

    /// Total of free bytes that hold data in the input.
    pub fn dropped_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.dropped_bytes).sum()
    }

    /// Counts, per region, the free bytes that hold data in `disk`: free
    /// sectors not known to be unallocated and not all zero. Reads only
    /// free bytes the input stores.
    pub fn measure_dropped(&mut self, disk: &dyn VirtualDisk) -> Result<(), UsageError> {
        const STEP: u64 = 64 << 20;
        for i in 0..self.regions.len() {
            let (start, len) = (self.regions[i].start, self.regions[i].len);
            if self.regions[i].free_bytes == 0 {
                continue;
            }
            let mut dropped = 0u64;
            let mut runs = Vec::new();
            let mut at = start;
            while at < start + len {
                let n = STEP.min(start + len - at);
                runs.clear();
                self.regions[i].free_runs(disk, at, n, &mut runs)?;
                for &(o, l) in &runs {
                    dropped += stored_nonzero(disk, o, l)?;
                }
                at += n;
            }
            self.regions[i].dropped_bytes = dropped;
        }
        Ok(())
    }
}

/// Lays `disk` out and measures, per region, the free bytes it stores
/// (what [`map_disk`] and [`DiskMap::measure_dropped`] give together).
pub fn survey(disk: &dyn VirtualDisk) -> Result<DiskMap, UsageError> {
    let mut map = map_disk(disk);
    map.measure_dropped(disk)?;
    Ok(map)
}

/// Bytes of non-zero 512-byte sectors in `offset..offset + len` of `disk`.
fn stored_nonzero(disk: &dyn VirtualDisk, offset: u64, len: u64) -> Result<u64, UsageError> {
    const CHUNK: u64 = 1 << 20;
    let mut count = 0u64;
    let mut at = offset;
    let end = offset + len;
    while at < end {
        // Chunks aligned to the disk, so that holes are seen as such.
        let n = (CHUNK - at % CHUNK).min(end - at);
        if !disk.is_unallocated(at, n) {
            let block = disk
                .range(at, usize::try_from(n).unwrap_or(0))
                .map_err(|e| UsageError::Io {
                    what: "free space",
                    offset: at,
                    source: std::io::Error::other(e.to_string()),
                })?;
            if let Some(data) = block.data() {
                count += data
                    .chunks(SECTOR_BYTES)
                    .filter(|s| !crate::pipeline::zero::is_zero(s))
                    .map(|s| s.len() as u64)
                    .sum::<u64>();
            }
            disk.release(at, n);
        }
        at += n;
    }
    Ok(count)
}

/// Reads the filesystem of a partition-sized region.
fn read_region(disk: &dyn VirtualDisk, mut region: Region) -> Region {
    let Some(window) = Window::new(disk, region.start, region.len) else {
        region.state = RegionState::Kept;
        region.reason = Some("the partition ends past the disk".into());
        return region;
    };
    let opened: Result<Option<Box<dyn FreeSpace>>, UsageError> = (|| {
        if let Some(fs) = ext::open(&window)? {
            return Ok(Some(Box::new(fs) as Box<dyn FreeSpace>));
        }
        if let Some(fs) = ntfs::open(&window)? {
            return Ok(Some(Box::new(fs)));
        }
        if let Some(fs) = fat::open(&window)? {
            return Ok(Some(Box::new(fs)));
        }
        if let Some(fs) = swap::open(&window)? {
            return Ok(Some(Box::new(fs)));
        }
        Ok(None)
    })();
    let name = fs_name(&window);
    region.filesystem = Some(name.clone());
    let validated = opened.and_then(|fs| match fs {
        Some(fs) => fs.validate(&window).map(|free| Some((fs, free))),
        None => Ok(None),
    });
    match validated {
        Ok(Some((fs, free))) => {
            region.filesystem = Some(fs.name().to_string());
            region.state = RegionState::Read;
            region.filesystem_bytes = Some(fs.size_bytes());
            region.free_bytes = free;
            region.used_bytes = region.len.saturating_sub(free);
            region.fs = Some(fs);
        }
        Ok(None) => {
            region.reason = Some(format!("{name}: sparsify does not read this filesystem"));
        }
        Err(e) => region.reason = Some(format!("{name}: {e}")),
    }
    region
}

fn fs_name(dev: &Window<'_>) -> String {
    let kind = detect(dev);
    let name = match kind {
        FsKind::Swap => "swap",
        FsKind::Lvm => "lvm2",
        FsKind::Unknown => {
            let mut head = [0u8; 6];
            use crate::disk::device::Device;
            if dev.read_at(0, &mut head).is_ok() && &head == LUKS_MAGIC {
                "luks"
            } else {
                "unknown"
            }
        }
        other => other.parted_name(),
    };
    name.to_string()
}

/// A table entry's span in bytes.
fn span(p: &PartitionInfo) -> (u64, u64) {
    (p.start_lba * SECTOR_SIZE, p.size_sectors * SECTOR_SIZE)
}

/// Lays out `disk`. A table that cannot be read makes the whole disk kept,
/// with the reason.
pub fn map_disk(disk: &dyn VirtualDisk) -> DiskMap {
    let size = disk.size_bytes();
    let whole = Window::new(disk, 0, size);
    let table = whole.as_ref().map(|w| read_table(w));
    let kind = match &table {
        Some(Ok(t)) => t.kind,
        _ => TableKind::None,
    };
    let regions = match table {
        Some(Ok(t)) => match t.kind {
            TableKind::None => vec![read_region(
                disk,
                Region::new(RegionKind::Partition, 0, size, RegionState::Kept),
            )],
            _ => table_regions(disk, &t, size),
        },
        Some(Err(e)) => vec![Region::kept(
            RegionKind::Table,
            0,
            size,
            format!("the partition table cannot be read: {e}"),
        )],
        None => Vec::new(),
    };
    DiskMap {
        table: kind,
        size_bytes: size,
        regions,
    }
}

/// Regions of a disk with an MBR or a GPT.
fn table_regions(disk: &dyn VirtualDisk, t: &Table, size: u64) -> Vec<Region> {
    let mut parts: Vec<&PartitionInfo> = t
        .partitions
        .iter()
        .filter(|p| p.role != PartitionRole::Extended)
        .collect();
    parts.sort_by_key(|p| p.start_lba);
    if parts.is_empty() {
        return vec![Region::kept(
            RegionKind::Table,
            0,
            size,
            "the partition table lists no partitions",
        )];
    }
    for w in parts.windows(2) {
        let (a, b) = (span(w[0]), span(w[1]));
        if a.0 + a.1 > b.0 {
            return vec![Region::kept(
                RegionKind::Table,
                0,
                size,
                format!("partitions {} and {} overlap", w[0].number, w[1].number),
            )];
        }
    }
    let extended: Vec<(u64, u64)> = t
        .partitions
        .iter()
        .filter(|p| p.role == PartitionRole::Extended)
        .flat_map(|p| ebr_sectors(disk, p))
        .collect();
    let (head_end, tail_start, head_reason, tail_reason) = match t.kind {
        TableKind::Gpt => (
            t.first_usable_lba.unwrap_or(0) * SECTOR_SIZE,
            (t.last_usable_lba.unwrap_or(0) + 1) * SECTOR_SIZE,
            "protective MBR, GPT header and entries",
            "backup GPT entries and header",
        ),
        _ => (
            span(parts[0]).0,
            size,
            "MBR and the boot loader gap before the first partition",
            "",
        ),
    };
    let mut regions = vec![Region::kept(
        RegionKind::Table,
        0,
        head_end.min(size),
        head_reason,
    )];
    let mut at = head_end.min(size);
    for p in parts {
        let (start, len) = span(p);
        if start > at {
            regions.extend(gap_regions(at, start, &extended));
        }
        let mut r = Region::new(RegionKind::Partition, start, len, RegionState::Kept);
        r.number = Some(p.number);
        regions.push(read_region(disk, r));
        at = start + len;
    }
    if tail_start > at {
        regions.extend(gap_regions(at, tail_start.min(size), &extended));
        at = tail_start.min(size);
    }
    if size > at {
        regions.push(Region::kept(RegionKind::Table, at, size - at, tail_reason));
    }
    regions
}

/// The byte spans of the EBRs of extended partition `p`: one sector each,
/// or the whole extended partition when its chain cannot be walked.
fn ebr_sectors(disk: &dyn VirtualDisk, p: &PartitionInfo) -> Vec<(u64, u64)> {
    let walk = || -> Option<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        let mut lba = p.start_lba;
        while out.len() < crate::partition::MAX_LOGICAL_PARTITIONS {
            let at = lba.checked_mul(SECTOR_SIZE)?;
            let mut sector = [0u8; SECTOR_BYTES];
            disk.read_at(at, &mut sector).ok()?;
            let ebr = crate::partition::mbr::Mbr::parse(&sector, at, "EBR").ok()?;
            out.push((at, SECTOR_SIZE));
            let next = &ebr.entries[1];
            if next.is_empty() {
                return Some(out);
            }
            lba = p.start_lba.checked_add(u64::from(next.start_lba))?;
            if lba > p.end_lba || out.iter().any(|&(a, _)| a == lba * SECTOR_SIZE) {
                return None;
            }
        }
        None
    };
    walk().unwrap_or_else(|| vec![span(p)])
}

/// The space `from..to` outside every partition: free, except where an
/// EBR of an extended partition sits.
fn gap_regions(from: u64, to: u64, extended: &[(u64, u64)]) -> Vec<Region> {
    let mut out = Vec::new();
    let mut at = from;
    let mut ext: Vec<(u64, u64)> = extended
        .iter()
        .map(|&(s, l)| (s.max(from), (s + l).min(to)))
        .filter(|(s, e)| e > s)
        .collect();
    ext.sort_unstable();
    for (s, e) in ext {
        if s > at {
            out.push(Region::new(RegionKind::Gap, at, s - at, RegionState::Free));
        }
        let s = s.max(at);
        if e > s {
            out.push(Region::kept(
                RegionKind::Extended,
                s,
                e - s,
                "an EBR of the extended partition",
            ));
        }
        at = at.max(e);
    }
    if to > at {
        out.push(Region::new(RegionKind::Gap, at, to - at, RegionState::Free));
    }
    out
}
