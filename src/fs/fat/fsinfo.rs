//! The FAT32 FSInfo sector: a free-cluster count and a next-free hint,
//! between three signatures. [`FsInfo::parse`] and [`FsInfo::to_bytes`]
//! mirror each other; [`read_fsinfo`] is the only I/O.

use super::bpb::{off, put_u32, u32_at, BOOT_SECTOR_BYTES};
use super::error::{read_vec, FatError};
use super::layout::Layout;
use crate::disk::device::Device;

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

/// The FSInfo sector, when it has all three signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub sector: u64,
    raw: Vec<u8>,
    pub free_count: u32,
    pub next_free: u32,
}

impl FsInfo {
    /// `None` unless `raw` (read from `sector`) has the three signatures.
    pub fn parse(raw: &[u8], sector: u64) -> Option<FsInfo> {
        let raw = raw.get(..BOOT_SECTOR_BYTES)?;
        let ok = u32_at(raw, FSI_LEAD_SIG) == FSI_LEAD_SIG_VALUE
            && u32_at(raw, FSI_STRUC_SIG) == FSI_STRUC_SIG_VALUE
            && u32_at(raw, FSI_TRAIL_SIG) == FSI_TRAIL_SIG_VALUE;
        ok.then(|| FsInfo {
            sector,
            free_count: u32_at(raw, FSI_FREE_COUNT),
            next_free: u32_at(raw, FSI_NXT_FREE),
            raw: raw.to_vec(),
        })
    }

    /// The sector's bytes with the counts written back: the mirror of
    /// [`FsInfo::parse`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut raw = self.raw.clone();
        put_u32(&mut raw, FSI_FREE_COUNT, self.free_count);
        put_u32(&mut raw, FSI_NXT_FREE, self.next_free);
        raw
    }

    /// After `added` clusters from `first_new_cluster` on became free: a
    /// known free count grows; a full volume's hint points at the new space.
    pub fn grown(&self, added: u64, first_new_cluster: u64) -> FsInfo {
        let mut f = self.clone();
        if self.free_count != FSI_UNKNOWN {
            let free = u64::from(self.free_count).saturating_add(added);
            f.free_count = u32::try_from(free).unwrap_or(FSI_UNKNOWN);
            if self.free_count == 0 {
                f.next_free = u32::try_from(first_new_cluster).unwrap_or(FSI_UNKNOWN);
            }
        }
        f.raw = f.to_bytes();
        f
    }
}

/// Reads the FSInfo sector `sector` of a FAT32 volume: `None` when there
/// is none (0, or outside the reserved area) or it lacks its signatures.
pub fn read_fsinfo(dev: &dyn Device, l: &Layout, sector: u64) -> Result<Option<FsInfo>, FatError> {
    if sector == 0 || sector >= l.reserved {
        return Ok(None);
    }
    let raw = read_vec(
        dev,
        l.sector_bytes(sector),
        off(BOOT_SECTOR_BYTES),
        "FSInfo",
    )?;
    Ok(FsInfo::parse(&raw, sector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialize_mirrors_parse_and_grows_counts() {
        let mut raw = vec![0u8; 512];
        put_u32(&mut raw, FSI_LEAD_SIG, FSI_LEAD_SIG_VALUE);
        put_u32(&mut raw, FSI_STRUC_SIG, FSI_STRUC_SIG_VALUE);
        put_u32(&mut raw, FSI_TRAIL_SIG, FSI_TRAIL_SIG_VALUE);
        put_u32(&mut raw, FSI_NXT_FREE, 77);
        let f = FsInfo::parse(&raw, 1).unwrap();
        assert_eq!(f.to_bytes(), raw);
        let g = f.grown(10, 500);
        assert_eq!((g.free_count, g.next_free), (10, 500));
        assert_eq!(FsInfo::parse(&g.to_bytes(), 1), Some(g));
        raw[FSI_TRAIL_SIG + 3] = 0;
        assert_eq!(FsInfo::parse(&raw, 1), None);
    }
}
