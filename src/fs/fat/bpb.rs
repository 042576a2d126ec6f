//! The FAT boot sector and its BIOS parameter block (BPB): [`Bpb::parse`]
//! reads the fields at the offsets of Microsoft's FAT specification and
//! [`Bpb::to_bytes`] writes them back at the same offsets, over the bytes
//! that were read (so boot code and labels are kept). Pure: no I/O.

/// The boot signature at the end of the boot sector.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
pub(super) const BOOT_SIGNATURE_OFFSET: usize = 510;
/// Bytes read for the boot sector (the BPB lies in the first 512 bytes
/// whatever the sector size).
pub const BOOT_SECTOR_BYTES: usize = 512;

// BPB field offsets (Microsoft FAT specification names).
pub(super) const BS_JMP_BOOT: usize = 0;
pub(super) const BS_OEM_NAME: usize = 3;
pub(super) const BPB_BYTS_PER_SEC: usize = 11;
pub(super) const BPB_SEC_PER_CLUS: usize = 13;
pub(super) const BPB_RSVD_SEC_CNT: usize = 14;
pub(super) const BPB_NUM_FATS: usize = 16;
pub(super) const BPB_ROOT_ENT_CNT: usize = 17;
pub(super) const BPB_TOT_SEC16: usize = 19;
pub(super) const BPB_FAT_SZ16: usize = 22;
pub(super) const BPB_TOT_SEC32: usize = 32;
pub(super) const BPB_FAT_SZ32: usize = 36;
pub(super) const BPB_ROOT_CLUS: usize = 44;
pub(super) const BPB_FS_INFO: usize = 48;
pub(super) const BPB_BK_BOOT_SEC: usize = 50;

/// x86 jump opcodes a FAT boot sector starts with.
const JMP_NEAR: u8 = 0xE9;
const JMP_SHORT: u8 = 0xEB;
const NOP: u8 = 0x90;
/// The OEM name NTFS writes where FAT has its OEM name.
const NTFS_OEM_NAME: &[u8; 8] = b"NTFS    ";
const MIN_BYTES_PER_SECTOR: u16 = 512;
const MAX_BYTES_PER_SECTOR: u16 = 4096;

pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(super) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// A byte offset as u64 (offsets here are small constants).
pub(super) fn off(at: usize) -> u64 {
    u64::try_from(at).unwrap_or(u64::MAX)
}

/// The BPB fields, as stored, beside the 512 boot-sector bytes they came
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bpb {
    raw: Vec<u8>,
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub reserved_sectors: u16,
    pub num_fats: u8,
    pub root_entries: u16,
    pub total_sectors_16: u16,
    pub fat_size_16: u16,
    pub total_sectors_32: u32,
    pub fat_size_32: u32,
    /// FAT32 only (`BPB_RootClus`).
    pub root_cluster: u32,
    /// FAT32 only (`BPB_FSInfo`).
    pub fs_info: u16,
    /// FAT32 only (`BPB_BkBootSec`).
    pub backup_boot: u16,
}

impl Bpb {
    /// `None` unless the sector looks like a FAT boot sector: x86 jump,
    /// 0x55AA, a power-of-two sector size 512..=4096, a power-of-two
    /// cluster size, at least one FAT and one reserved sector, not NTFS.
    /// Whether the fields add up is [`super::layout::Layout::validate`]'s.
    pub fn parse(s: &[u8]) -> Option<Bpb> {
        let s = s.get(..BOOT_SECTOR_BYTES)?;
        let jump_ok = s[BS_JMP_BOOT] == JMP_NEAR
            || (s[BS_JMP_BOOT] == JMP_SHORT && s[BS_JMP_BOOT + 2] == NOP);
        let sig_ok = s[BOOT_SIGNATURE_OFFSET..BOOT_SIGNATURE_OFFSET + 2] == BOOT_SIGNATURE;
        let bps = u16_at(s, BPB_BYTS_PER_SEC);
        let spc = s[BPB_SEC_PER_CLUS];
        let ntfs = &s[BS_OEM_NAME..BS_OEM_NAME + 8] == NTFS_OEM_NAME;
        if !jump_ok
            || !sig_ok
            || ntfs
            || !(MIN_BYTES_PER_SECTOR..=MAX_BYTES_PER_SECTOR).contains(&bps)
            || !bps.is_power_of_two()
            || spc == 0
            || !spc.is_power_of_two()
            || s[BPB_NUM_FATS] == 0
            || u16_at(s, BPB_RSVD_SEC_CNT) == 0
        {
            return None;
        }
        Some(Bpb {
            raw: s.to_vec(),
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

    /// The 512 boot-sector bytes with every field written back at its
    /// offset: the mirror of [`Bpb::parse`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.raw.clone();
        put_u16(&mut s, BPB_BYTS_PER_SEC, self.bytes_per_sector);
        s[BPB_SEC_PER_CLUS] = self.sectors_per_cluster;
        put_u16(&mut s, BPB_RSVD_SEC_CNT, self.reserved_sectors);
        s[BPB_NUM_FATS] = self.num_fats;
        put_u16(&mut s, BPB_ROOT_ENT_CNT, self.root_entries);
        put_u16(&mut s, BPB_TOT_SEC16, self.total_sectors_16);
        put_u16(&mut s, BPB_FAT_SZ16, self.fat_size_16);
        put_u32(&mut s, BPB_TOT_SEC32, self.total_sectors_32);
        if self.is_fat32_layout() {
            put_u32(&mut s, BPB_FAT_SZ32, self.fat_size_32);
            put_u32(&mut s, BPB_ROOT_CLUS, self.root_cluster);
            put_u16(&mut s, BPB_FS_INFO, self.fs_info);
            put_u16(&mut s, BPB_BK_BOOT_SEC, self.backup_boot);
        }
        s
    }

    /// FAT32 keeps its FAT size in `BPB_FATSz32` and `BPB_FATSz16` = 0.
    pub fn is_fat32_layout(&self) -> bool {
        self.fat_size_16 == 0
    }

    /// `BPB_TotSec16`, or `BPB_TotSec32` when that is 0.
    pub fn total_sectors(&self) -> u64 {
        if self.total_sectors_16 != 0 {
            u64::from(self.total_sectors_16)
        } else {
            u64::from(self.total_sectors_32)
        }
    }

    /// Sectors per FAT copy, from the field the layout uses.
    pub fn fat_size_sectors(&self) -> u64 {
        if self.is_fat32_layout() {
            u64::from(self.fat_size_32)
        } else {
            u64::from(self.fat_size_16)
        }
    }

    /// The field holding the sector count, and its offset.
    pub(super) fn total_field(&self) -> (&'static str, usize) {
        if self.total_sectors_16 != 0 {
            ("BPB_TotSec16", BPB_TOT_SEC16)
        } else {
            ("BPB_TotSec32", BPB_TOT_SEC32)
        }
    }

    /// The field holding the FAT size, and its offset.
    pub(super) fn fat_size_field(&self) -> (&'static str, usize) {
        if self.is_fat32_layout() {
            ("BPB_FATSz32", BPB_FAT_SZ32)
        } else {
            ("BPB_FATSz16", BPB_FAT_SZ16)
        }
    }

    /// This BPB with `total` sectors and FAT copies of `fat_size` sectors:
    /// `BPB_TotSec16` when the count fits and the volume used it (FAT12/16),
    /// else `BPB_TotSec32`. Sizes beyond the fields saturate; callers
    /// bound them first.
    pub fn resized(&self, total: u64, fat_size: u64) -> Bpb {
        let mut b = self.clone();
        match u16::try_from(total) {
            Ok(t16) if !self.is_fat32_layout() && self.total_sectors_16 != 0 => {
                b.total_sectors_16 = t16;
                b.total_sectors_32 = 0;
            }
            _ => {
                b.total_sectors_16 = 0;
                b.total_sectors_32 = u32::try_from(total).unwrap_or(u32::MAX);
            }
        }
        if self.is_fat32_layout() {
            b.fat_size_32 = u32::try_from(fat_size).unwrap_or(u32::MAX);
        } else {
            b.fat_size_16 = u16::try_from(fat_size).unwrap_or(u16::MAX);
        }
        b.raw = b.to_bytes();
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        b[3..11].copy_from_slice(b"mkfs.fat");
        put_u16(&mut b, BPB_BYTS_PER_SEC, 512);
        b[BPB_SEC_PER_CLUS] = 4;
        put_u16(&mut b, BPB_RSVD_SEC_CNT, 4);
        b[BPB_NUM_FATS] = 2;
        put_u16(&mut b, BPB_ROOT_ENT_CNT, 512);
        put_u16(&mut b, BPB_TOT_SEC16, 40000);
        put_u16(&mut b, BPB_FAT_SZ16, 40);
        b[510..].copy_from_slice(&BOOT_SIGNATURE);
        b
    }

    #[test]
    fn serialize_mirrors_parse() {
        let b = Bpb::parse(&golden()).unwrap();
        assert_eq!(b.to_bytes(), golden());
        let grown = b.resized(70000, 41);
        let again = Bpb::parse(&grown.to_bytes()).unwrap();
        assert_eq!(again, grown);
        assert_eq!((again.total_sectors_16, again.total_sectors_32), (0, 70000));
        assert_eq!(again.fat_size_sectors(), 41);
    }

    #[test]
    fn not_a_boot_sector() {
        for (at, v) in [
            (0, 0u8),
            (510, 0),
            (BPB_BYTS_PER_SEC + 1, 0),
            (BPB_SEC_PER_CLUS, 3),
        ] {
            let mut b = golden();
            b[at] = v;
            assert_eq!(Bpb::parse(&b), None, "byte {at} = {v}");
        }
        assert_eq!(Bpb::parse(&golden()[..511]), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            if let Some(b) = Bpb::parse(&bytes) {
                let again = Bpb::parse(&b.to_bytes());
                proptest::prop_assert_eq!(again.as_ref(), Some(&b));
                let _ = b.resized(u64::MAX, u64::MAX).to_bytes();
            }
        }
    }
}
