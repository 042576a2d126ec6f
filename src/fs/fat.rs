//! FAT12/16/32: probe a volume, and grow it to fill a grown partition.
//!
//! Owns the boot sector (BPB), the FAT32 FSInfo sector and the FAT entries a
//! grow touches. Growth keeps the FAT type (FAT12 < 4085 clusters, FAT16 <
//! 65525, FAT32 otherwise) and never renumbers a cluster:
//!
//! - **in place**, when the existing FAT already has entries for the new
//!   clusters: only the total-sector fields, the FSInfo free count and the
//!   FAT32 backup boot sector/FSInfo change;
//! - **moving the data area**, when the FAT must grow (as libparted does):
//!   every FAT copy grows, so the root directory (FAT12/16) and every
//!   allocated cluster move up by `num_fats × growth` sectors (a multiple of
//!   the cluster size, so the data area keeps its alignment). Cluster numbers
//!   and directory entries do not change. This step is not crash-safe: an
//!   interruption leaves a broken filesystem, so callers work on a copy.
//!
//! The plan is data: byte moves, zero fills and sector writes. Nothing here
//! decides whether a grow is wanted; that is the caller's.

use crate::disk::device::{check_range, Device};
use crate::format::FormatError;

/// The boot signature at the end of the boot sector.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
const BOOT_SIGNATURE_OFFSET: usize = 510;
/// Bytes read for the boot sector (the BPB lies in the first 512 bytes
/// whatever the sector size).
const BOOT_SECTOR_BYTES: usize = 512;

// BPB field offsets (Microsoft FAT specification names).
const BS_JMP_BOOT: usize = 0;
const BS_OEM_NAME: usize = 3;
const BPB_BYTS_PER_SEC: usize = 11;
const BPB_SEC_PER_CLUS: usize = 13;
const BPB_RSVD_SEC_CNT: usize = 14;
const BPB_NUM_FATS: usize = 16;
const BPB_ROOT_ENT_CNT: usize = 17;
const BPB_TOT_SEC16: usize = 19;
const BPB_FAT_SZ16: usize = 22;
const BPB_TOT_SEC32: usize = 32;
const BPB_FAT_SZ32: usize = 36;
const BPB_ROOT_CLUS: usize = 44;
const BPB_FS_INFO: usize = 48;
const BPB_BK_BOOT_SEC: usize = 50;

// FSInfo sector.
const FSI_LEAD_SIG: usize = 0;
const FSI_LEAD_SIG_VALUE: u32 = 0x4161_5252;
const FSI_STRUC_SIG: usize = 484;
const FSI_STRUC_SIG_VALUE: u32 = 0x6141_7272;
const FSI_FREE_COUNT: usize = 488;
const FSI_NXT_FREE: usize = 492;
const FSI_TRAIL_SIG: usize = 508;
const FSI_TRAIL_SIG_VALUE: u32 = 0xAA55_0000;
/// FSInfo value meaning "not known".
pub const FSI_UNKNOWN: u32 = 0xFFFF_FFFF;

/// Most clusters of each type (the type follows from the count alone).
pub const FAT12_MAX_CLUSTERS: u64 = 4084;
pub const FAT16_MAX_CLUSTERS: u64 = 65524;
/// FAT32 cluster numbers run 2..=0x0FFFFFF6.
pub const FAT32_MAX_CLUSTERS: u64 = 0x0FFF_FFF5;
/// The 28 bits of a FAT32 entry that hold the value (the top 4 are reserved).
const FAT32_ENTRY_MASK: u32 = 0x0FFF_FFFF;
/// FAT entry 1 "volume clean" bit (cleared while mounted, set on a clean
/// unmount): FAT16 and FAT32 only.
const FAT16_CLEAN_SHUTDOWN: u32 = 0x8000;
const FAT32_CLEAN_SHUTDOWN: u32 = 0x0800_0000;
/// Bytes in a directory entry.
const DIR_ENTRY_BYTES: u64 = 32;
/// Entries handled per FAT chunk (a multiple of 8, so that FAT12 chunks start
/// on a byte boundary).
const CHUNK_ENTRIES: u64 = 256 * 1024;
/// Bytes copied per step when moving data.
const COPY_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Free clusters that may separate two allocated runs and still be moved as
/// one (fewer, larger copies).
const RUN_MERGE_GAP_CLUSTERS: u64 = 16;
/// Bound on the FAT-size fixed point iteration.
const MAX_FAT_SIZE_ITERATIONS: usize = 64;

/// The three FAT variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl FatType {
    /// The type a volume with `clusters` data clusters has.
    pub fn from_clusters(clusters: u64) -> FatType {
        if clusters <= FAT12_MAX_CLUSTERS {
            FatType::Fat12
        } else if clusters <= FAT16_MAX_CLUSTERS {
            FatType::Fat16
        } else {
            FatType::Fat32
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        }
    }

    fn entry_bits(self) -> u64 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    fn max_clusters(self) -> u64 {
        match self {
            FatType::Fat12 => FAT12_MAX_CLUSTERS,
            FatType::Fat16 => FAT16_MAX_CLUSTERS,
            FatType::Fat32 => FAT32_MAX_CLUSTERS,
        }
    }
}

/// What `probe` learns about a FAT volume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FatInfo {
    /// "FAT12", "FAT16" or "FAT32".
    pub fat_type: &'static str,
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub reserved_sectors: u16,
    pub num_fats: u8,
    pub root_entries: u16,
    pub total_sectors: u64,
    pub fat_size_sectors: u32,
    /// First sector of the data area (cluster 2).
    pub data_start_sector: u64,
    pub cluster_count: u32,
    /// Clusters the FAT as sized has entries for.
    pub fat_capacity_clusters: u64,
    /// FAT32 FSInfo free count, when known.
    pub free_clusters: Option<u32>,
    /// FAT32 FSInfo next-free hint, when known.
    pub next_free_cluster: Option<u32>,
    /// FAT32 backup boot sector.
    pub backup_boot_sector: Option<u16>,
    /// FAT32 FSInfo sector.
    pub fs_info_sector: Option<u16>,
    /// Largest volume size, in bytes, reachable without growing the FAT.
    pub max_in_place_bytes: u64,
}

/// A byte range to copy to a higher offset (copied back to front, so the
/// ranges may overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub from: u64,
    pub to: u64,
    pub len: u64,
}

/// How a volume grows: the steps, in the order `apply_grow` runs them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FatGrowPlan {
    pub before: FatInfo,
    pub after: FatInfo,
    /// Whether the FAT grows and the data area moves (not crash-safe).
    pub moves_data: bool,
    /// Run first, in order.
    pub moves: Vec<Move>,
    /// `(offset, len)` to zero, after the moves.
    pub zero_fills: Vec<(u64, u64)>,
    /// `(offset, bytes)`, written last (boot sectors, FSInfo, FAT entries).
    /// Serialized as `{offset, len}` extents.
    #[serde(serialize_with = "crate::partition::serialize_write_extents")]
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Bytes of data the moves copy.
    pub bytes_moved: u64,
    pub notes: Vec<String>,
}

/// Errors from probing, planning and growing.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("I/O error {operation} at {offset:#x}: {source}")]
    Io {
        operation: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {0}")]
    Corrupt(FormatError),
    #[error("unsupported: {0}")]
    Unsupported(FormatError),
    #[error("no FAT filesystem found (boot sector has no FAT BPB)")]
    NotFat,
    #[error(
        "growing to {clusters} clusters would change the filesystem from {from} to {to}; \
         changing the FAT type is not supported (largest size keeping {from}: {max_in_place_bytes} bytes)"
    )]
    TypeChange {
        from: &'static str,
        to: &'static str,
        clusters: u64,
        max_in_place_bytes: u64,
    },
    #[error(
        "FAT would need to grow from {fat_sectors} to {needed_sectors} sectors, but moving the data \
         area gains no clusters at {new_size_bytes} bytes (largest in-place size: {max_in_place_bytes} bytes)"
    )]
    NoRoom {
        fat_sectors: u64,
        needed_sectors: u64,
        new_size_bytes: u64,
        max_in_place_bytes: u64,
    },
    #[error(
        "FAT would need to grow from {fat_sectors} to {needed_sectors} sectors; moving the data \
         area is not allowed in this mode (largest in-place size: {max_in_place_bytes} bytes)"
    )]
    NeedsMove {
        fat_sectors: u64,
        needed_sectors: u64,
        max_in_place_bytes: u64,
    },
    #[error("{when}: FAT volume expected {expected}, found {found}")]
    Mismatch {
        when: &'static str,
        expected: String,
        found: String,
    },
}

fn io_err(operation: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> FatError {
    move |source| FatError::Io {
        operation,
        offset,
        source,
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn off(at: usize) -> u64 {
    u64::try_from(at).unwrap_or(u64::MAX)
}

fn corrupt(field: &'static str, at: usize, found: String, expected: String) -> FatError {
    FatError::Corrupt(FormatError {
        structure: "FAT boot sector",
        field,
        offset: off(at),
        found,
        expected,
    })
}

fn unsupported(
    structure: &'static str,
    field: &'static str,
    offset: u64,
    found: String,
    expected: String,
) -> FatError {
    FatError::Unsupported(FormatError {
        structure,
        field,
        offset,
        found,
        expected,
    })
}

fn read_vec(
    dev: &dyn Device,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, FatError> {
    let n = usize::try_from(len).map_err(|_| {
        unsupported(
            what,
            "length",
            offset,
            len.to_string(),
            "an addressable length".into(),
        )
    })?;
    check_range(offset, n, dev.size_bytes()).map_err(io_err(what, offset))?;
    let mut buf = vec![0u8; n];
    dev.read_at(offset, &mut buf)
        .map_err(io_err(what, offset))?;
    Ok(buf)
}

/// The BPB fields, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bpb {
    raw: Vec<u8>,
    bytes_per_sector: u16,
    sectors_per_cluster: u8,
    reserved_sectors: u16,
    num_fats: u8,
    root_entries: u16,
    total_sectors_16: u16,
    fat_size_16: u16,
    total_sectors_32: u32,
    fat_size_32: u32,
    root_cluster: u32,
    fs_info: u16,
    backup_boot: u16,
}

impl Bpb {
    /// `None` unless the sector looks like a FAT boot sector: x86 jump,
    /// 0x55AA, a power-of-two sector size 512..=4096, a power-of-two
    /// cluster size, at least one FAT and one reserved sector, not NTFS.
    fn parse(s: &[u8]) -> Option<Bpb> {
        if s.len() < BOOT_SECTOR_BYTES {
            return None;
        }
        let jump_ok =
            s[BS_JMP_BOOT] == 0xE9 || (s[BS_JMP_BOOT] == 0xEB && s[BS_JMP_BOOT + 2] == 0x90);
        let sig_ok = s[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2] == BOOT_SIGNATURE;
        let bps = u16_at(s, BPB_BYTS_PER_SEC);
        let spc = s[BPB_SEC_PER_CLUS];
        let ntfs = &s[BS_OEM_NAME..BS_OEM_NAME + 8] == b"NTFS    ";
        if !jump_ok
            || !sig_ok
            || ntfs
            || !(512..=4096).contains(&bps)
            || !bps.is_power_of_two()
            || spc == 0
            || !spc.is_power_of_two()
            || s[BPB_NUM_FATS] == 0
            || u16_at(s, BPB_RSVD_SEC_CNT) == 0
        {
            return None;
        }
        Some(Bpb {
            raw: s[..BOOT_SECTOR_BYTES].to_vec(),
            bytes_per_sector: bps,
            sectors_per_cluster: spc,
            reserved_sectors: u16_at(s, BPB_RSVD_SEC_CNT),
            num_fats: s[BPB_NUM_FATS],
            root_entries: u16_at(s, BPB_ROOT_ENT_CNT),
            total_sectors_16: u16_at(s, BPB_TOT_SEC16),
            fat_size_16: u16_at(s, BPB_FAT_SZ16),
            total_sectors_32: u32_at(s, BPB_TOT_SEC32),
            fat_size_32: u32_at(s, BPB_FAT_SZ32),
            root_cluster: u32_at(s, BPB_ROOT_CLUS),
            fs_info: u16_at(s, BPB_FS_INFO),
            backup_boot: u16_at(s, BPB_BK_BOOT_SEC),
        })
    }

    fn is_fat32_layout(&self) -> bool {
        self.fat_size_16 == 0
    }
}

/// The geometry derived from a BPB, all in sectors, as u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    fat_type: FatType,
    bps: u64,
    spc: u64,
    reserved: u64,
    num_fats: u64,
    root_dir_sectors: u64,
    fat_size: u64,
    total: u64,
}

impl Layout {
    fn data_start(&self) -> u64 {
        self.reserved + self.num_fats * self.fat_size + self.root_dir_sectors
    }

    /// Data clusters for `total` sectors with this FAT size.
    fn clusters_for(&self, total: u64, fat_size: u64) -> Option<u64> {
        let meta = self.reserved + self.num_fats * fat_size + self.root_dir_sectors;
        Some(total.checked_sub(meta)? / self.spc)
    }

    fn clusters(&self) -> u64 {
        self.clusters_for(self.total, self.fat_size).unwrap_or(0)
    }

    /// Clusters a FAT of `fat_size` sectors has entries for (entries 0 and 1
    /// are reserved).
    fn capacity_for(&self, fat_size: u64) -> u64 {
        (fat_size * self.bps * 8 / self.fat_type.entry_bits()).saturating_sub(2)
    }

    /// Sectors a FAT needs for `clusters`.
    fn fat_sectors_for(&self, clusters: u64) -> u64 {
        ((clusters + 2) * self.fat_type.entry_bits()).div_ceil(8 * self.bps)
    }

    /// Most clusters without changing the FAT size or the type.
    fn max_in_place_clusters(&self) -> u64 {
        self.capacity_for(self.fat_size)
            .min(self.fat_type.max_clusters())
    }

    /// Largest size in bytes whose cluster count stays in place.
    fn max_in_place_bytes(&self) -> u64 {
        let c = self.max_in_place_clusters();
        let total = (self.data_start() + (c + 1) * self.spc - 1).min(u64::from(u32::MAX));
        total * self.bps
    }

    fn sector_bytes(&self, sector: u64) -> u64 {
        sector * self.bps
    }

    /// Byte offset of FAT copy `i` for a FAT of `fat_size` sectors.
    fn fat_offset(&self, i: u64, fat_size: u64) -> u64 {
        (self.reserved + i * fat_size) * self.bps
    }
}

/// Validates a BPB against a device of `device_bytes` into a layout.
fn layout(b: &Bpb, device_bytes: u64) -> Result<Layout, FatError> {
    let bps = u64::from(b.bytes_per_sector);
    let total = if b.total_sectors_16 != 0 {
        u64::from(b.total_sectors_16)
    } else {
        u64::from(b.total_sectors_32)
    };
    let fat_size = if b.is_fat32_layout() {
        u64::from(b.fat_size_32)
    } else {
        u64::from(b.fat_size_16)
    };
    if fat_size == 0 {
        return Err(corrupt(
            "BPB_FATSz32",
            BPB_FAT_SZ32,
            "0".into(),
            "a non-zero FAT size".into(),
        ));
    }
    if total == 0 {
        return Err(corrupt(
            "BPB_TotSec32",
            BPB_TOT_SEC32,
            "0 (and BPB_TotSec16 0)".into(),
            "a non-zero sector count".into(),
        ));
    }
    let device_sectors = device_bytes / bps;
    if total > device_sectors {
        return Err(corrupt(
            if b.total_sectors_16 != 0 {
                "BPB_TotSec16"
            } else {
                "BPB_TotSec32"
            },
            if b.total_sectors_16 != 0 {
                BPB_TOT_SEC16
            } else {
                BPB_TOT_SEC32
            },
            format!("{total} sectors"),
            format!("at most the device's {device_sectors} sectors of {bps} bytes"),
        ));
    }
    let root_dir_sectors = (u64::from(b.root_entries) * DIR_ENTRY_BYTES).div_ceil(bps);
    let mut l = Layout {
        fat_type: FatType::Fat12,
        bps,
        spc: u64::from(b.sectors_per_cluster),
        reserved: u64::from(b.reserved_sectors),
        num_fats: u64::from(b.num_fats),
        root_dir_sectors,
        fat_size,
        total,
    };
    if l.data_start() >= total {
        return Err(corrupt(
            "BPB_FATSz",
            if b.is_fat32_layout() {
                BPB_FAT_SZ32
            } else {
                BPB_FAT_SZ16
            },
            format!("metadata of {} sectors", l.data_start()),
            format!("less than the volume's {total} sectors"),
        ));
    }
    l.fat_type = FatType::from_clusters(l.clusters());
    if b.is_fat32_layout() != (l.fat_type == FatType::Fat32) {
        return Err(unsupported(
            "FAT boot sector",
            "BPB_FATSz16",
            off(BPB_FAT_SZ16),
            format!(
                "{} with {} clusters",
                if b.is_fat32_layout() {
                    "a FAT32 layout"
                } else {
                    "a FAT12/16 layout"
                },
                l.clusters()
            ),
            format!("the layout of {}", l.fat_type.name()),
        ));
    }
    if l.fat_type == FatType::Fat32 && b.root_entries != 0 {
        return Err(corrupt(
            "BPB_RootEntCnt",
            BPB_ROOT_ENT_CNT,
            b.root_entries.to_string(),
            "0 on FAT32".into(),
        ));
    }
    if l.clusters() > l.capacity_for(fat_size) {
        return Err(corrupt(
            "BPB_FATSz",
            if b.is_fat32_layout() {
                BPB_FAT_SZ32
            } else {
                BPB_FAT_SZ16
            },
            format!("{fat_size} sectors ({} entries)", l.capacity_for(fat_size)),
            format!("room for {} clusters", l.clusters()),
        ));
    }
    Ok(l)
}

/// The FSInfo sector, if the volume is FAT32 and the sector has all three
/// signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FsInfo {
    sector: u64,
    raw: Vec<u8>,
    free_count: u32,
    next_free: u32,
}

fn read_fsinfo(dev: &dyn Device, l: &Layout, sector: u64) -> Result<Option<FsInfo>, FatError> {
    if sector == 0 || sector >= l.reserved {
        return Ok(None);
    }
    let raw = read_vec(
        dev,
        l.sector_bytes(sector),
        off(BOOT_SECTOR_BYTES),
        "FSInfo",
    )?;
    let ok = u32_at(&raw, FSI_LEAD_SIG) == FSI_LEAD_SIG_VALUE
        && u32_at(&raw, FSI_STRUC_SIG) == FSI_STRUC_SIG_VALUE
        && u32_at(&raw, FSI_TRAIL_SIG) == FSI_TRAIL_SIG_VALUE;
    if !ok {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        sector,
        free_count: u32_at(&raw, FSI_FREE_COUNT),
        next_free: u32_at(&raw, FSI_NXT_FREE),
        raw,
    }))
}

struct Volume {
    bpb: Bpb,
    layout: Layout,
    fsinfo: Option<FsInfo>,
}

fn read_volume(dev: &dyn Device) -> Result<Option<Volume>, FatError> {
    if dev.size_bytes() < off(BOOT_SECTOR_BYTES) {
        return Ok(None);
    }
    let s = read_vec(dev, 0, off(BOOT_SECTOR_BYTES), "FAT boot sector")?;
    let Some(bpb) = Bpb::parse(&s) else {
        return Ok(None);
    };
    let layout = layout(&bpb, dev.size_bytes())?;
    let fsinfo = if layout.fat_type == FatType::Fat32 {
        read_fsinfo(dev, &layout, u64::from(bpb.fs_info))?
    } else {
        None
    };
    Ok(Some(Volume {
        bpb,
        layout,
        fsinfo,
    }))
}

fn info(v: &Volume) -> FatInfo {
    let l = &v.layout;
    let fat32 = l.fat_type == FatType::Fat32;
    let known = |x: u32| (x != FSI_UNKNOWN).then_some(x);
    FatInfo {
        fat_type: l.fat_type.name(),
        bytes_per_sector: v.bpb.bytes_per_sector,
        sectors_per_cluster: v.bpb.sectors_per_cluster,
        reserved_sectors: v.bpb.reserved_sectors,
        num_fats: v.bpb.num_fats,
        root_entries: v.bpb.root_entries,
        total_sectors: l.total,
        fat_size_sectors: u32::try_from(l.fat_size).unwrap_or(u32::MAX),
        data_start_sector: l.data_start(),
        cluster_count: u32::try_from(l.clusters()).unwrap_or(u32::MAX),
        fat_capacity_clusters: l.capacity_for(l.fat_size),
        free_clusters: v.fsinfo.as_ref().and_then(|f| known(f.free_count)),
        next_free_cluster: v.fsinfo.as_ref().and_then(|f| known(f.next_free)),
        backup_boot_sector: fat32.then_some(v.bpb.backup_boot),
        fs_info_sector: fat32.then_some(v.bpb.fs_info),
        max_in_place_bytes: l.max_in_place_bytes(),
    }
}

/// Probes a volume: `None` when sector 0 is not a FAT boot sector, an error
/// when it is one but its fields do not add up.
pub fn probe(dev: &dyn Device) -> Result<Option<FatInfo>, FatError> {
    Ok(read_volume(dev)?.map(|v| info(&v)))
}

/// Reads FAT entry `n` of a buffer that starts at entry `base` (a multiple
/// of 8).
fn entry_get(buf: &[u8], base: u64, n: u64, t: FatType) -> Option<u32> {
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
fn entry_clear(buf: &mut [u8], base: u64, n: u64, t: FatType) {
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
fn entry_byte(n: u64, t: FatType) -> u64 {
    n * t.entry_bits() / 8
}

/// Reads entries `first..end` of FAT copy `copy` chunk by chunk, calling
/// `f(buffer, base_entry, entries)` for each chunk.
fn for_each_chunk(
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
fn clear_entries(
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
fn volume_clean(dev: &dyn Device, l: &Layout) -> Result<bool, FatError> {
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
fn allocated_runs(dev: &dyn Device, l: &Layout) -> Result<Vec<(u64, u64)>, FatError> {
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

/// The boot sector with new total-sector fields (and FAT size when it
/// grows): TotSec16 when the count fits and the volume used it, else TotSec32.
fn patch_boot_sector(
    sector: &[u8],
    t: FatType,
    old_used_16: bool,
    total: u64,
    fat_size: u64,
) -> Vec<u8> {
    let mut s = sector.to_vec();
    match u16::try_from(total) {
        Ok(t16) if t != FatType::Fat32 && old_used_16 => {
            put_u16(&mut s, BPB_TOT_SEC16, t16);
            put_u32(&mut s, BPB_TOT_SEC32, 0);
        }
        _ => {
            put_u16(&mut s, BPB_TOT_SEC16, 0);
            put_u32(
                &mut s,
                BPB_TOT_SEC32,
                u32::try_from(total).unwrap_or(u32::MAX),
            );
        }
    }
    if t == FatType::Fat32 {
        put_u32(
            &mut s,
            BPB_FAT_SZ32,
            u32::try_from(fat_size).unwrap_or(u32::MAX),
        );
    } else {
        put_u16(
            &mut s,
            BPB_FAT_SZ16,
            u16::try_from(fat_size).unwrap_or(u16::MAX),
        );
    }
    s
}

fn patch_fsinfo(f: &FsInfo, added: u64, first_new_cluster: u64) -> Vec<u8> {
    let mut raw = f.raw.clone();
    if f.free_count != FSI_UNKNOWN {
        let free = u64::from(f.free_count).saturating_add(added);
        put_u32(
            &mut raw,
            FSI_FREE_COUNT,
            u32::try_from(free).unwrap_or(FSI_UNKNOWN),
        );
        // A full volume's hint points nowhere useful: point it at the new space.
        if f.free_count == 0 {
            put_u32(
                &mut raw,
                FSI_NXT_FREE,
                u32::try_from(first_new_cluster).unwrap_or(FSI_UNKNOWN),
            );
        }
    }
    raw
}

/// The FAT size (sectors) for a volume of `new_total` sectors when the FAT
/// must grow: the smallest size at least `l.fat_size` that holds its own
/// clusters and keeps the data area's offset modulo the cluster size.
fn grown_fat_size(l: &Layout, new_total: u64) -> Option<u64> {
    let mut f = l.fat_size;
    for _ in 0..MAX_FAT_SIZE_ITERATIONS {
        let clusters = l.clusters_for(new_total, f)?;
        let need = l.fat_sectors_for(clusters).max(l.fat_size);
        // Round the growth so num_fats × growth is a whole number of clusters.
        let mut g = need - l.fat_size;
        while (l.num_fats * g) % l.spc != 0 {
            g += 1;
        }
        let next = l.fat_size + g;
        if next <= f {
            return Some(f);
        }
        f = next;
    }
    None
}

/// Whether a grow may move the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrowMode {
    /// Only grow when the FAT already has room ([`FatError::NeedsMove`]
    /// otherwise); nothing but metadata sectors is written.
    InPlaceOnly,
    /// Grow the FAT and move the data area when needed (not crash-safe).
    AllowMove,
}

/// Plans growing the volume on `dev` to `new_size_bytes` (normally the
/// partition's new size, `dev.size_bytes()`), moving the data area if the
/// FAT must grow (see [`FatGrowPlan::moves_data`]). Reads; writes nothing.
pub fn plan_grow(dev: &dyn Device, new_size_bytes: u64) -> Result<FatGrowPlan, FatError> {
    plan_grow_with(dev, new_size_bytes, GrowMode::AllowMove)
}

/// [`plan_grow`] with an explicit [`GrowMode`].
pub fn plan_grow_with(
    dev: &dyn Device,
    new_size_bytes: u64,
    mode: GrowMode,
) -> Result<FatGrowPlan, FatError> {
    let v = read_volume(dev)?.ok_or(FatError::NotFat)?;
    let before = info(&v);
    let l = v.layout;
    if new_size_bytes > dev.size_bytes() {
        return Err(unsupported(
            "device",
            "size",
            0,
            format!("a plan for {new_size_bytes} bytes"),
            format!("at most the device's {} bytes", dev.size_bytes()),
        ));
    }
    let new_total = (new_size_bytes / l.bps).min(u64::from(u32::MAX));
    let mut notes = Vec::new();
    if new_size_bytes / l.bps > u64::from(u32::MAX) {
        notes.push("FAT holds at most 2^32-1 sectors; the rest of the device is unused".into());
    }
    if new_total < l.total {
        return Err(unsupported(
            "FAT boot sector",
            "BPB_TotSec32",
            off(BPB_TOT_SEC32),
            format!("{} sectors now, {new_total} asked", l.total),
            "a size at least the current one (shrinking is not supported)".into(),
        ));
    }
    let max_in_place_bytes = l.max_in_place_bytes();
    let in_place_clusters = l.clusters_for(new_total, l.fat_size).unwrap_or(0);
    let type_change = |clusters: u64| FatError::TypeChange {
        from: l.fat_type.name(),
        to: FatType::from_clusters(clusters).name(),
        clusters,
        max_in_place_bytes,
    };
    let fits_in_place = in_place_clusters <= l.capacity_for(l.fat_size);
    let in_place_type = FatType::from_clusters(in_place_clusters);
    if in_place_type != l.fat_type && (fits_in_place || mode == GrowMode::InPlaceOnly) {
        return Err(type_change(in_place_clusters));
    }
    let old_clusters = l.clusters();
    if !volume_clean(dev, &l)? {
        notes.push(
            "FAT entry 1 says the volume was not cleanly unmounted; check it with fsck.fat".into(),
        );
    }
    let mut writes = Vec::new();
    let mut moves = Vec::new();
    let mut zero_fills = Vec::new();
    let mut bytes_moved = 0;
    let (fat_size, new_clusters) = if fits_in_place {
        let cleared = clear_entries(
            dev,
            &l,
            old_clusters + 2,
            in_place_clusters + 2,
            &mut writes,
        )?;
        if cleared > 0 {
            notes.push(format!(
                "{cleared} FAT entries beyond the old last cluster were not free; marked free"
            ));
        }
        (l.fat_size, in_place_clusters)
    } else {
        let needed = l.fat_sectors_for(in_place_clusters);
        if mode == GrowMode::InPlaceOnly {
            return Err(FatError::NeedsMove {
                fat_sectors: l.fat_size,
                needed_sectors: needed,
                max_in_place_bytes,
            });
        }
        let no_room = || FatError::NoRoom {
            fat_sectors: l.fat_size,
            needed_sectors: needed,
            new_size_bytes,
            max_in_place_bytes,
        };
        let f = grown_fat_size(&l, new_total).ok_or_else(no_room)?;
        let clusters = l.clusters_for(new_total, f).ok_or_else(no_room)?;
        let fits_field = l.fat_type == FatType::Fat32 || f <= u64::from(u16::MAX);
        if FatType::from_clusters(clusters) != l.fat_type {
            return Err(type_change(clusters));
        }
        if clusters <= old_clusters || !fits_field {
            return Err(no_room());
        }
        // Entries past the old last cluster in the old FAT must read free;
        // the FAT's new sectors are zeroed.
        let cleared = clear_entries(
            dev,
            &l,
            old_clusters + 2,
            l.capacity_for(l.fat_size) + 2,
            &mut writes,
        )?;
        if cleared > 0 {
            notes.push(format!(
                "{cleared} FAT entries beyond the old last cluster were not free; marked free"
            ));
        }
        let shift = l.num_fats * (f - l.fat_size) * l.bps;
        let old_data = l.sector_bytes(l.data_start());
        let cluster_bytes = l.spc * l.bps;
        // Highest run first: each lands above data not yet moved.
        for &(first, count) in allocated_runs(dev, &l)?.iter().rev() {
            let from = old_data + (first - 2) * cluster_bytes;
            moves.push(Move {
                from,
                to: from + shift,
                len: count * cluster_bytes,
            });
            bytes_moved += count * cluster_bytes;
        }
        if l.root_dir_sectors > 0 {
            let from = old_data - l.root_dir_sectors * l.bps;
            moves.push(Move {
                from,
                to: from + shift,
                len: l.root_dir_sectors * l.bps,
            });
            bytes_moved += l.root_dir_sectors * l.bps;
        }
        // FAT copies, highest first; then zero each copy's new sectors.
        for i in (1..l.num_fats).rev() {
            moves.push(Move {
                from: l.fat_offset(i, l.fat_size),
                to: l.fat_offset(i, f),
                len: l.fat_size * l.bps,
            });
        }
        for i in 0..l.num_fats {
            zero_fills.push((
                l.fat_offset(i, f) + l.fat_size * l.bps,
                (f - l.fat_size) * l.bps,
            ));
        }
        // Entry fixes were computed at the old FAT offsets; move them too.
        for (at, _) in writes.iter_mut() {
            let copy = (*at / l.bps - l.reserved) / l.fat_size;
            *at += copy * (f - l.fat_size) * l.bps;
        }
        notes.push(format!(
            "the FAT grows from {} to {f} sectors; {bytes_moved} bytes of data move up by {shift} bytes (not crash-safe)",
            l.fat_size
        ));
        (f, clusters)
    };

    if new_clusters > l.fat_type.max_clusters() {
        return Err(unsupported(
            "FAT boot sector",
            "BPB_TotSec32",
            off(BPB_TOT_SEC32),
            format!("{new_total} sectors ({new_clusters} clusters)"),
            format!(
                "at most {} clusters for {} (largest in-place size: {max_in_place_bytes} bytes)",
                l.fat_type.max_clusters(),
                l.fat_type.name()
            ),
        ));
    }
    let added = new_clusters - old_clusters;
    let old_used_16 = v.bpb.total_sectors_16 != 0;
    let boot = patch_boot_sector(&v.bpb.raw, l.fat_type, old_used_16, new_total, fat_size);
    let mut after_fsinfo = None;
    if let Some(fsi) = &v.fsinfo {
        let raw = patch_fsinfo(fsi, added, old_clusters + 2);
        writes.push((l.sector_bytes(fsi.sector), raw.clone()));
        after_fsinfo = Some(FsInfo {
            sector: fsi.sector,
            free_count: u32_at(&raw, FSI_FREE_COUNT),
            next_free: u32_at(&raw, FSI_NXT_FREE),
            raw,
        });
    }
    if l.fat_type == FatType::Fat32 {
        backup_writes(
            dev,
            &v,
            &l,
            old_used_16,
            new_total,
            fat_size,
            added,
            &mut writes,
            &mut notes,
        )?;
    }
    // The primary boot sector last: until it is written the volume reads as before.
    writes.push((0, boot.clone()));

    let after_bpb = Bpb::parse(&boot).ok_or(FatError::NotFat)?;
    let mut after_layout = l;
    after_layout.total = new_total;
    after_layout.fat_size = fat_size;
    let after = info(&Volume {
        bpb: after_bpb,
        layout: after_layout,
        fsinfo: after_fsinfo,
    });
    Ok(FatGrowPlan {
        before,
        after,
        moves_data: !moves.is_empty() || fat_size != l.fat_size,
        moves,
        zero_fills,
        writes,
        bytes_moved,
        notes,
    })
}

/// FAT32: the backup boot sector gets the same field changes as the primary
/// (fsck.fat compares them), and the backup FSInfo the same counts.
#[allow(clippy::too_many_arguments)]
fn backup_writes(
    dev: &dyn Device,
    v: &Volume,
    l: &Layout,
    old_used_16: bool,
    new_total: u64,
    fat_size: u64,
    added: u64,
    writes: &mut Vec<(u64, Vec<u8>)>,
    notes: &mut Vec<String>,
) -> Result<(), FatError> {
    let bk = u64::from(v.bpb.backup_boot);
    if bk == 0 || bk == u64::from(u16::MAX) || bk >= l.reserved {
        return Ok(());
    }
    let raw = read_vec(
        dev,
        l.sector_bytes(bk),
        off(BOOT_SECTOR_BYTES),
        "FAT backup boot sector",
    )?;
    if Bpb::parse(&raw).is_none() {
        notes.push(format!(
            "backup boot sector {bk} is not a FAT boot sector; left alone"
        ));
        return Ok(());
    }
    writes.push((
        l.sector_bytes(bk),
        patch_boot_sector(&raw, l.fat_type, old_used_16, new_total, fat_size),
    ));
    if let Some(fsi) = read_fsinfo(dev, l, bk + u64::from(v.bpb.fs_info))? {
        writes.push((
            l.sector_bytes(fsi.sector),
            patch_fsinfo(&fsi, added, l.clusters() + 2),
        ));
    }
    Ok(())
}

/// Copies `m.len` bytes from `m.from` to `m.to` (> from) back to front.
fn copy_up(dev: &mut dyn Device, m: &Move) -> Result<(), FatError> {
    let mut remaining = m.len;
    let mut buf = vec![0u8; usize::try_from(COPY_CHUNK_BYTES.min(m.len)).unwrap_or(0)];
    while remaining > 0 {
        let n = COPY_CHUNK_BYTES.min(remaining);
        remaining -= n;
        let chunk = &mut buf[..usize::try_from(n).unwrap_or(0)];
        dev.read_at(m.from + remaining, chunk)
            .map_err(io_err("moving data (read)", m.from + remaining))?;
        dev.write_at(m.to + remaining, chunk)
            .map_err(io_err("moving data (write)", m.to + remaining))?;
    }
    Ok(())
}

/// Runs a plan: checks the volume still reads as `plan.before` and every
/// step fits the device, runs the moves, zero fills and writes in order,
/// then checks the volume reads as `plan.after`.
pub fn apply_grow(dev: &mut dyn Device, plan: &FatGrowPlan) -> Result<(), FatError> {
    let now = probe(dev)?;
    if now.as_ref() != Some(&plan.before) {
        return Err(FatError::Mismatch {
            when: "before writing",
            expected: format!("{:?}", plan.before),
            found: format!("{now:?}"),
        });
    }
    let size = dev.size_bytes();
    let fits = |at: u64, len: u64| at.checked_add(len).is_some_and(|e| e <= size);
    let all_fit = plan
        .moves
        .iter()
        .all(|m| m.to >= m.from && fits(m.from, m.len) && fits(m.to, m.len))
        && plan.zero_fills.iter().all(|&(at, len)| fits(at, len))
        && plan.writes.iter().all(|(at, b)| fits(*at, off(b.len())));
    if !all_fit {
        return Err(FatError::Mismatch {
            when: "checking the plan",
            expected: format!("steps inside the device's {size} bytes"),
            found: "a step outside it".into(),
        });
    }
    for m in &plan.moves {
        copy_up(dev, m)?;
    }
    let zeros = vec![0u8; usize::try_from(COPY_CHUNK_BYTES).unwrap_or(0)];
    for &(at, len) in &plan.zero_fills {
        let mut done = 0;
        while done < len {
            let n = COPY_CHUNK_BYTES.min(len - done);
            let chunk = &zeros[..usize::try_from(n).unwrap_or(0)];
            dev.write_at(at + done, chunk)
                .map_err(io_err("zeroing new FAT sectors", at + done))?;
            done += n;
        }
    }
    for (at, bytes) in &plan.writes {
        dev.write_at(*at, bytes)
            .map_err(io_err("writing FAT metadata", *at))?;
    }
    let back = probe(dev)?;
    if back.as_ref() != Some(&plan.after) {
        return Err(FatError::Mismatch {
            when: "after writing",
            expected: format!("{:?}", plan.after),
            found: format!("{back:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::device::MemDevice;

    /// A minimal FAT16 volume: 4 reserved, 2 FATs of `fat` sectors, 512
    /// root entries, 4 sectors per cluster.
    fn fat16(total: u16, fat: u16, device_bytes: usize) -> MemDevice {
        let mut b = vec![0u8; device_bytes];
        b[0] = 0xEB;
        b[1] = 0x3C;
        b[2] = 0x90;
        b[3..11].copy_from_slice(b"mkfs.fat");
        put_u16(&mut b, BPB_BYTS_PER_SEC, 512);
        b[BPB_SEC_PER_CLUS] = 4;
        put_u16(&mut b, BPB_RSVD_SEC_CNT, 4);
        b[BPB_NUM_FATS] = 2;
        put_u16(&mut b, BPB_ROOT_ENT_CNT, 512);
        put_u16(&mut b, BPB_TOT_SEC16, total);
        b[21] = 0xF8;
        put_u16(&mut b, BPB_FAT_SZ16, fat);
        b[510] = 0x55;
        b[511] = 0xAA;
        // FAT entries 0 and 1.
        for copy in 0..2usize {
            let at = (4 + copy * usize::from(fat)) * 512;
            b[at..at + 4].copy_from_slice(&[0xF8, 0xFF, 0xFF, 0xFF]);
        }
        MemDevice { bytes: b }
    }

    #[test]
    fn probes_fat16() {
        // 40000 sectors: data starts at 4 + 2*40 + 32 = 116; 9971 clusters.
        let d = fat16(40000, 40, 40000 * 512);
        let i = probe(&d).unwrap().unwrap();
        assert_eq!(i.fat_type, "FAT16");
        assert_eq!(i.data_start_sector, 116);
        assert_eq!(i.cluster_count, 9971);
        assert_eq!(i.fat_capacity_clusters, 40 * 256 - 2);
        assert_eq!(
            probe(&MemDevice {
                bytes: vec![0; 4096]
            })
            .unwrap(),
            None
        );
    }

    #[test]
    fn corrupt_fields_name_themselves() {
        let mut d = fat16(40000, 40, 40000 * 512);
        put_u16(&mut d.bytes, BPB_FAT_SZ16, 30);
        let e = probe(&d).unwrap_err().to_string();
        assert!(e.contains("BPB_FATSz") && e.contains("0x16"), "{e}");
        let d = fat16(40000, 40, 20000 * 512);
        let e = probe(&d).unwrap_err().to_string();
        assert!(e.contains("at 0x13: BPB_TotSec16"), "{e}");
    }

    #[test]
    fn grows_in_place_and_switches_to_totsec32() {
        let mut d = fat16(40000, 40, 70000 * 512);
        let cap = 40 * 256 - 2;
        let max = probe(&d).unwrap().unwrap().max_in_place_bytes;
        assert_eq!(max, (116 + (cap + 1) * 4 - 1) * 512);
        let plan = plan_grow(&d, max).unwrap();
        assert!(!plan.moves_data);
        apply_grow(&mut d, &plan).unwrap();
        let i = probe(&d).unwrap().unwrap();
        assert_eq!(u64::from(i.cluster_count), cap);
        assert_eq!(u64::from(u16_at(&d.bytes, BPB_TOT_SEC16)), max / 512);
        // A FAT with room for 65534 clusters: past 65535 sectors the count
        // moves to BPB_TotSec32.
        let mut d = fat16(40000, 256, 70000 * 512);
        let plan = plan_grow(&d, 70000 * 512).unwrap();
        assert!(!plan.moves_data);
        apply_grow(&mut d, &plan).unwrap();
        assert_eq!(u16_at(&d.bytes, BPB_TOT_SEC16), 0);
        assert_eq!(u32_at(&d.bytes, BPB_TOT_SEC32), 70000);
        assert_eq!(probe(&d).unwrap().unwrap().total_sectors, 70000);
    }

    #[test]
    fn notes_a_volume_not_cleanly_unmounted() {
        let mut d = fat16(40000, 40, 40100 * 512);
        assert!(plan_grow(&d, 40100 * 512).unwrap().notes.is_empty());
        d.bytes[4 * 512 + 3] = 0x7F; // entry 1 = 0x7FFF: clean bit clear
        let plan = plan_grow(&d, 40100 * 512).unwrap();
        assert!(
            plan.notes[0].contains("not cleanly unmounted"),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn refuses_type_change() {
        let d = fat16(40000, 40, 600_000 * 512);
        let e = plan_grow(&d, 600_000 * 512).unwrap_err();
        assert!(
            matches!(
                e,
                FatError::TypeChange {
                    from: "FAT16",
                    to: "FAT32",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("from FAT16 to FAT32"));
    }

    #[test]
    fn moves_data_when_the_fat_must_grow() {
        let mut d = fat16(40000, 40, 60000 * 512);
        // A file in clusters 2..=3 and the root directory's first entry.
        for c in [2u64, 3] {
            let at = usize::try_from(116 + (c - 2) * 4).unwrap() * 512;
            d.bytes[at..at + 2048].fill(u8::try_from(c).unwrap());
        }
        let root = (4 + 80) * 512;
        d.bytes[root..root + 11].copy_from_slice(b"HELLO   TXT");
        for copy in 0..2usize {
            let at = (4 + copy * 40) * 512;
            d.bytes[at + 4..at + 8].copy_from_slice(&[3, 0, 0xFF, 0xFF]);
        }
        let plan = plan_grow(&d, 60000 * 512).unwrap();
        assert!(plan.moves_data);
        apply_grow(&mut d, &plan).unwrap();
        let i = probe(&d).unwrap().unwrap();
        let f = usize::try_from(i.fat_size_sectors).unwrap();
        assert!(f > 40);
        assert_eq!((2 * (f - 40)) % 4, 0);
        let data = usize::try_from(i.data_start_sector).unwrap() * 512;
        assert_eq!(d.bytes[data], 2);
        assert_eq!(d.bytes[data + 2048], 3);
        let root = (4 + 2 * f) * 512;
        assert_eq!(&d.bytes[root..root + 11], b"HELLO   TXT");
        // Both FATs hold the chain and zeros beyond.
        for copy in 0..2usize {
            let at = (4 + copy * f) * 512;
            assert_eq!(
                &d.bytes[at..at + 8],
                &[0xF8, 0xFF, 0xFF, 0xFF, 3, 0, 0xFF, 0xFF]
            );
            assert!(d.bytes[at + 40 * 512..at + f * 512].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn refuses_a_move_that_gains_nothing() {
        // A FAT exactly full; one more cluster needs a bigger FAT, whose
        // growth (a whole cluster across both copies) eats the gain.
        let d = fat16(41068, 40, 41072 * 512);
        let e = plan_grow(&d, 41072 * 512).unwrap_err();
        assert!(
            matches!(
                e,
                FatError::NoRoom {
                    fat_sectors: 40,
                    needed_sectors: 41,
                    ..
                }
            ),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("FAT would need to grow from 40 to 41 sectors"),
            "{e}"
        );
    }

    #[test]
    fn in_place_only_refuses_what_needs_a_move() {
        let d = fat16(40000, 40, 60000 * 512);
        let e = plan_grow_with(&d, 60000 * 512, GrowMode::InPlaceOnly).unwrap_err();
        assert!(
            matches!(
                e,
                FatError::NeedsMove {
                    fat_sectors: 40,
                    needed_sectors: 59,
                    ..
                }
            ),
            "{e}"
        );
        let max = probe(&d).unwrap().unwrap().max_in_place_bytes;
        assert_eq!(
            e.to_string(),
            format!(
                "FAT would need to grow from 40 to 59 sectors; moving the data area is not \
                 allowed in this mode (largest in-place size: {max} bytes)"
            )
        );
        let plan = plan_grow_with(&d, max, GrowMode::InPlaceOnly).unwrap();
        assert!(!plan.moves_data && plan.moves.is_empty() && plan.zero_fills.is_empty());
    }

    #[test]
    fn plans_serialize_writes_as_extents() {
        let d = fat16(40000, 40, 60000 * 512);
        let plan = plan_grow(&d, 60000 * 512).unwrap();
        let v = serde_json::to_value(&plan).unwrap();
        let last = v["writes"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last, serde_json::json!({"offset": 0, "len": 512}));
        assert_eq!(v["after"]["total_sectors"], 60000);
        assert_eq!(v["moves_data"], true);
    }

    #[test]
    fn fat12_entries_pack_in_bytes() {
        let mut buf = vec![0u8; 12];
        buf[..6].copy_from_slice(&[0xF8, 0xFF, 0xFF, 0x03, 0x40, 0x00]);
        assert_eq!(entry_get(&buf, 0, 2, FatType::Fat12), Some(0x003));
        assert_eq!(entry_get(&buf, 0, 3, FatType::Fat12), Some(0x004));
        entry_clear(&mut buf, 0, 3, FatType::Fat12);
        assert_eq!(entry_get(&buf, 0, 2, FatType::Fat12), Some(0x003));
        assert_eq!(entry_get(&buf, 0, 3, FatType::Fat12), Some(0));
        assert_eq!(entry_get(&buf, 0, 100, FatType::Fat12), None);
    }

    proptest::proptest! {
        #[test]
        fn plans_apply_and_read_back(
            reserved in 1u16..40, fats in 1u8..3, root in 0u16..1024,
            spc_log in 0u32..4, fat in 1u16..48, total in 100u16..16000, grow in 0usize..16000,
        ) {
            let spc = 1u8 << spc_log;
            let dev_sectors = usize::from(total) + grow;
            let mut d = fat16(total, fat, dev_sectors * 512);
            put_u16(&mut d.bytes, BPB_RSVD_SEC_CNT, reserved);
            d.bytes[BPB_NUM_FATS] = fats;
            put_u16(&mut d.bytes, BPB_ROOT_ENT_CNT, root);
            d.bytes[BPB_SEC_PER_CLUS] = spc;
            let Ok(Some(_)) = probe(&d) else { return Ok(()); };
            let n = d.size_bytes();
            if let Ok(plan) = plan_grow(&d, n) {
                let mut copy = d.clone();
                apply_grow(&mut copy, &plan).unwrap();
                proptest::prop_assert_eq!(plan.after.fat_type, plan.before.fat_type);
                proptest::prop_assert!(plan.after.cluster_count >= plan.before.cluster_count);
                proptest::prop_assert_eq!(plan.after.total_sectors, u64::try_from(dev_sectors).unwrap());
            }
        }

        #[test]
        fn probe_and_plan_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 512), size in 512usize..200_000) {
            let mut d = fat16(40000, 40, 40000 * 512);
            // Keep the magic so the BPB path runs, scramble the fields.
            d.bytes[3..510].copy_from_slice(&bytes[3..510]);
            d.bytes.truncate(size.max(512));
            let _ = probe(&d);
            let n = d.size_bytes();
            let _ = plan_grow(&d, n);
        }
    }
}
