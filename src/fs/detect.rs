//! Which filesystem a partition (or bare disk) holds, from its magic
//! numbers, named the way parted (and so Nova) names them.

use crate::disk::device::Device;

/// What a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Fat12,
    Fat16,
    Fat32,
    Ntfs,
    Xfs,
    Btrfs,
    Swap,
    Lvm,
    Unknown,
}

impl FsKind {
    /// The name parted prints in its "File system" column (what Nova shows
    /// in "Disk contains a filesystem we are unable to resize: %s").
    pub fn parted_name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::Ntfs => "ntfs",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "linux-swap(v1)",
            FsKind::Lvm => "lvm2 pv",
            FsKind::Unknown => "",
        }
    }

    pub fn is_ext(self) -> bool {
        matches!(self, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4)
    }

    pub fn is_fat(self) -> bool {
        matches!(self, FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32)
    }
}

/// ext superblock offset and fields used to tell ext2/3/4 apart.
const EXT_SUPERBLOCK: u64 = 1024;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_COMPAT_HAS_JOURNAL: u32 = 0x4;
/// INCOMPAT flags only ext4 sets: extents, 64bit, flex_bg, mmp, inline data...
const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x100 | 0x200 | 0x8000 | 0x1_0000;
/// RO_COMPAT flags only ext4 sets: huge_file, gdt_csum, dir_nlink, extra_isize, metadata_csum.
const EXT4_RO_COMPAT: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x400;

fn read(dev: &dyn Device, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    dev.read_at(offset, &mut buf).ok()?;
    Some(buf)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Identifies the filesystem at the start of `dev`.
pub fn detect(dev: &dyn Device) -> FsKind {
    if let Some(sb) = read(dev, EXT_SUPERBLOCK, 1024) {
        if u16::from_le_bytes([sb[56], sb[57]]) == EXT_MAGIC {
            let compat = le32(&sb, 92);
            let incompat = le32(&sb, 96);
            let ro_compat = le32(&sb, 100);
            return if incompat & EXT4_INCOMPAT != 0 || ro_compat & EXT4_RO_COMPAT != 0 {
                FsKind::Ext4
            } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
                FsKind::Ext3
            } else {
                FsKind::Ext2
            };
        }
    }
    if let Some(b) = read(dev, 0, 512) {
        if &b[3..11] == b"NTFS    " {
            return FsKind::Ntfs;
        }
        if &b[0..4] == b"XFSB" {
            return FsKind::Xfs;
        }
    }
    if let Ok(Some(fat)) = crate::fs::fat::probe(dev) {
        return match fat.fat_type {
            "FAT12" => FsKind::Fat12,
            "FAT16" => FsKind::Fat16,
            _ => FsKind::Fat32,
        };
    }
    if read(dev, 0x1_0040, 8).is_some_and(|b| b == b"_BHRfS_M") {
        return FsKind::Btrfs;
    }
    if read(dev, 4086, 10).is_some_and(|b| b == b"SWAPSPACE2" || b == b"SWAP-SPACE") {
        return FsKind::Swap;
    }
    if read(dev, 512, 32).is_some_and(|b| &b[0..8] == b"LABELONE" && &b[24..32] == b"LVM2 001") {
        return FsKind::Lvm;
    }
    FsKind::Unknown
}
