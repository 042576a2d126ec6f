//! FAT12/16/32: probe a volume, and grow it to fill a grown partition.
//!
//! One module per on-disk concept: [`bpb`] (the boot sector, parse and
//! serialize), [`layout`] (the geometry a BPB describes and the named rules
//! it must pass), [`fsinfo`] (the FAT32 FSInfo sector), `entries` (FAT
//! entries and scans over FAT copies), then the two halves of a grow,
//! `plan` (plain data) and `apply` (the writes).
//!
//! Growth keeps the FAT type (FAT12 < 4085 clusters, FAT16 < 65525, FAT32
//! otherwise) and never renumbers a cluster:
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
//! Nothing here decides whether a grow is wanted; that is the caller's.

mod apply;
pub mod bpb;
mod entries;
mod error;
pub mod fsinfo;
pub mod layout;
mod plan;

pub use apply::apply_grow;
pub use bpb::{Bpb, BOOT_SIGNATURE};
pub use error::FatError;
pub use fsinfo::{FsInfo, FSI_UNKNOWN};
pub use layout::Layout;
pub use plan::{plan_grow, plan_grow_with, FatGrowPlan, GrowMode, Move};

use crate::disk::device::Device;
use bpb::{off, BOOT_SECTOR_BYTES};
use error::read_vec;
use fsinfo::read_fsinfo;

/// Most clusters of each type (the type follows from the count alone).
pub const FAT12_MAX_CLUSTERS: u64 = 4084;
pub const FAT16_MAX_CLUSTERS: u64 = 65524;
/// FAT32 cluster numbers run 2..=0x0FFFFFF6.
pub const FAT32_MAX_CLUSTERS: u64 = 0x0FFF_FFF5;

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

    pub(crate) fn entry_bits(self) -> u64 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    pub(crate) fn max_clusters(self) -> u64 {
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

/// A volume as read: its BPB, the layout it validated into, and FSInfo.
struct Volume {
    bpb: Bpb,
    layout: Layout,
    fsinfo: Option<FsInfo>,
}

/// Reads and validates sector 0 (and FSInfo): `None` when it is not a
/// FAT boot sector.
fn read_volume(dev: &dyn Device) -> Result<Option<Volume>, FatError> {
    if dev.size_bytes() < off(BOOT_SECTOR_BYTES) {
        return Ok(None);
    }
    let s = read_vec(dev, 0, off(BOOT_SECTOR_BYTES), "FAT boot sector")?;
    let Some(bpb) = Bpb::parse(&s) else {
        return Ok(None);
    };
    let layout = Layout::validate(&bpb, dev.size_bytes())?;
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

/// What a volume says about itself, for plans and probes.
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

#[cfg(test)]
mod tests {
    use super::bpb::*;
    use super::entries::{entry_clear, entry_get};
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
    fn fat16_without_a_root_directory_is_refused_by_field() {
        let mut d = fat16(40000, 40, 40000 * 512);
        put_u16(&mut d.bytes, BPB_ROOT_ENT_CNT, 0);
        let e = probe(&d).unwrap_err().to_string();
        assert!(e.contains("BPB_RootEntCnt") && e.contains("found 0"), "{e}");
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
