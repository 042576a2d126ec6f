//! The geometry a BPB describes (FAT type, FAT size, root directory, data
//! area, cluster count), all in sectors as u64, and the rules a BPB must
//! pass before a grow trusts it: [`Layout::validate`] is a list of small
//! named rules, each failing with the field, what it holds and what was
//! expected (the checks `fsck.fat` makes on the fields a grow reads or
//! writes). Pure: no I/O.

use super::bpb::{
    off, Bpb, BPB_BK_BOOT_SEC, BPB_FAT_SZ16, BPB_FS_INFO, BPB_ROOT_CLUS, BPB_ROOT_ENT_CNT,
    BPB_TOT_SEC32,
};
use super::error::{corrupt, unsupported, FatError};
use super::FatType;

/// Bytes in a directory entry.
pub(super) const DIR_ENTRY_BYTES: u64 = 32;
/// The first cluster number of the data area.
const FIRST_CLUSTER: u64 = 2;
/// `BPB_FSInfo` / `BPB_BkBootSec` values meaning "none".
const NO_SECTOR: [u16; 2] = [0, 0xFFFF];

/// The geometry derived from a BPB, all in sectors, as u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub fat_type: FatType,
    pub bps: u64,
    pub spc: u64,
    pub reserved: u64,
    pub num_fats: u64,
    pub root_dir_sectors: u64,
    pub fat_size: u64,
    pub total: u64,
}

impl Layout {
    /// First sector of the data area (cluster 2).
    pub fn data_start(&self) -> u64 {
        self.reserved + self.num_fats * self.fat_size + self.root_dir_sectors
    }

    /// Data clusters for `total` sectors with this FAT size.
    pub fn clusters_for(&self, total: u64, fat_size: u64) -> Option<u64> {
        let meta = self.reserved + self.num_fats * fat_size + self.root_dir_sectors;
        Some(total.checked_sub(meta)? / self.spc)
    }

    pub fn clusters(&self) -> u64 {
        self.clusters_for(self.total, self.fat_size).unwrap_or(0)
    }

    /// Clusters a FAT of `fat_size` sectors has entries for (entries 0 and 1
    /// are reserved).
    pub fn capacity_for(&self, fat_size: u64) -> u64 {
        (fat_size * self.bps * 8 / self.fat_type.entry_bits()).saturating_sub(2)
    }

    /// Sectors a FAT needs for `clusters`.
    pub fn fat_sectors_for(&self, clusters: u64) -> u64 {
        ((clusters + 2) * self.fat_type.entry_bits()).div_ceil(8 * self.bps)
    }

    /// Most clusters without changing the FAT size or the type.
    pub fn max_in_place_clusters(&self) -> u64 {
        self.capacity_for(self.fat_size)
            .min(self.fat_type.max_clusters())
    }

    /// Largest size in bytes whose cluster count stays in place.
    pub fn max_in_place_bytes(&self) -> u64 {
        let c = self.max_in_place_clusters();
        let total = (self.data_start() + (c + 1) * self.spc - 1).min(u64::from(u32::MAX));
        total * self.bps
    }

    pub fn sector_bytes(&self, sector: u64) -> u64 {
        sector * self.bps
    }

    /// Byte offset of FAT copy `i` for a FAT of `fat_size` sectors.
    pub fn fat_offset(&self, i: u64, fat_size: u64) -> u64 {
        (self.reserved + i * fat_size) * self.bps
    }

    /// Validates `b` against a device of `device_bytes` into a layout.
    pub fn validate(b: &Bpb, device_bytes: u64) -> Result<Layout, FatError> {
        validate_fat_size(b)?;
        validate_total_sectors(b)?;
        validate_fits_device(b, device_bytes)?;
        let mut l = Layout {
            fat_type: FatType::Fat12,
            bps: u64::from(b.bytes_per_sector),
            spc: u64::from(b.sectors_per_cluster),
            reserved: u64::from(b.reserved_sectors),
            num_fats: u64::from(b.num_fats),
            root_dir_sectors: (u64::from(b.root_entries) * DIR_ENTRY_BYTES)
                .div_ceil(u64::from(b.bytes_per_sector)),
            fat_size: b.fat_size_sectors(),
            total: b.total_sectors(),
        };
        validate_metadata_fits(b, &l)?;
        l.fat_type = FatType::from_clusters(l.clusters());
        validate_type_matches_layout(b, &l)?;
        validate_fat32_root_entries(b, &l)?;
        validate_fat_capacity(b, &l)?;
        validate_fat32_root_cluster(b, &l)?;
        validate_fat32_reserved_sector("BPB_FSInfo", BPB_FS_INFO, b.fs_info, &l)?;
        validate_fat32_reserved_sector("BPB_BkBootSec", BPB_BK_BOOT_SEC, b.backup_boot, &l)?;
        Ok(l)
    }
}

fn validate_fat_size(b: &Bpb) -> Result<(), FatError> {
    if b.fat_size_sectors() == 0 {
        let (field, at) = b.fat_size_field();
        return Err(corrupt(field, at, "0".into(), "a non-zero FAT size".into()));
    }
    Ok(())
}

fn validate_total_sectors(b: &Bpb) -> Result<(), FatError> {
    if b.total_sectors() == 0 {
        return Err(corrupt(
            "BPB_TotSec32",
            BPB_TOT_SEC32,
            "0 (and BPB_TotSec16 0)".into(),
            "a non-zero sector count".into(),
        ));
    }
    Ok(())
}

fn validate_fits_device(b: &Bpb, device_bytes: u64) -> Result<(), FatError> {
    let bps = u64::from(b.bytes_per_sector);
    let device_sectors = device_bytes / bps;
    let total = b.total_sectors();
    if total > device_sectors {
        let (field, at) = b.total_field();
        return Err(corrupt(
            field,
            at,
            format!("{total} sectors"),
            format!("at most the device's {device_sectors} sectors of {bps} bytes"),
        ));
    }
    Ok(())
}

fn validate_metadata_fits(b: &Bpb, l: &Layout) -> Result<(), FatError> {
    if l.data_start() >= l.total {
        let (field, at) = b.fat_size_field();
        return Err(corrupt(
            field,
            at,
            format!("metadata of {} sectors", l.data_start()),
            format!("less than the volume's {} sectors", l.total),
        ));
    }
    Ok(())
}

fn validate_type_matches_layout(b: &Bpb, l: &Layout) -> Result<(), FatError> {
    if b.is_fat32_layout() != (l.fat_type == FatType::Fat32) {
        let layout = if b.is_fat32_layout() {
            "a FAT32 layout"
        } else {
            "a FAT12/16 layout"
        };
        return Err(unsupported(
            "FAT boot sector",
            "BPB_FATSz16",
            off(BPB_FAT_SZ16),
            format!("{layout} with {} clusters", l.clusters()),
            format!("the layout of {}", l.fat_type.name()),
        ));
    }
    Ok(())
}

fn validate_fat32_root_entries(b: &Bpb, l: &Layout) -> Result<(), FatError> {
    if l.fat_type == FatType::Fat32 && b.root_entries != 0 {
        return Err(corrupt(
            "BPB_RootEntCnt",
            BPB_ROOT_ENT_CNT,
            b.root_entries.to_string(),
            "0 on FAT32".into(),
        ));
    }
    if l.fat_type != FatType::Fat32 && b.root_entries == 0 {
        return Err(corrupt(
            "BPB_RootEntCnt",
            BPB_ROOT_ENT_CNT,
            "0".into(),
            format!("a root directory on {}", l.fat_type.name()),
        ));
    }
    Ok(())
}

fn validate_fat_capacity(b: &Bpb, l: &Layout) -> Result<(), FatError> {
    if l.clusters() > l.capacity_for(l.fat_size) {
        let (field, at) = b.fat_size_field();
        return Err(corrupt(
            field,
            at,
            format!(
                "{} sectors ({} entries)",
                l.fat_size,
                l.capacity_for(l.fat_size)
            ),
            format!("room for {} clusters", l.clusters()),
        ));
    }
    Ok(())
}

fn validate_fat32_root_cluster(b: &Bpb, l: &Layout) -> Result<(), FatError> {
    let last = l.clusters() + FIRST_CLUSTER;
    let root = u64::from(b.root_cluster);
    if l.fat_type == FatType::Fat32 && !(FIRST_CLUSTER..last).contains(&root) {
        return Err(corrupt(
            "BPB_RootClus",
            BPB_ROOT_CLUS,
            root.to_string(),
            format!("a cluster in {FIRST_CLUSTER}..{last}"),
        ));
    }
    Ok(())
}

/// FAT32's FSInfo and backup boot sector lie in the reserved area (or are
/// "none"); the grow rewrites both.
fn validate_fat32_reserved_sector(
    field: &'static str,
    at: usize,
    sector: u16,
    l: &Layout,
) -> Result<(), FatError> {
    if l.fat_type == FatType::Fat32
        && !NO_SECTOR.contains(&sector)
        && u64::from(sector) >= l.reserved
    {
        return Err(corrupt(
            field,
            at,
            sector.to_string(),
            format!(
                "a sector inside the {} reserved sectors (or 0 / 0xFFFF)",
                l.reserved
            ),
        ));
    }
    Ok(())
}
