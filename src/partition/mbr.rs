//! The 512-byte master boot record and extended boot records: pure parsing
//! and serialization of one sector, and the LBA → CHS rule the entries carry.
//!
//! Nothing here reads a device; `partition::read_table` reads the sectors and
//! hands them over.

use crate::format::FormatError;

/// Bytes in an MBR or EBR sector.
pub const MBR_SIZE: usize = super::SECTOR_BYTES;
/// Offset of the boot signature 0x55 0xAA.
pub const BOOT_SIGNATURE_OFFSET: usize = 510;
/// The boot signature.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Offset of the 32-bit disk signature (Windows "disk identifier").
pub const DISK_SIGNATURE_OFFSET: usize = 440;
/// Offset of the first of the four partition entries.
pub const ENTRIES_OFFSET: usize = 446;
/// Bytes in a partition entry.
pub const ENTRY_SIZE: usize = 16;
/// Entries in an MBR.
pub const ENTRY_COUNT: usize = 4;

/// Offsets of the fields inside an entry.
pub const ENTRY_BOOT_INDICATOR: usize = 0;
pub const ENTRY_START_CHS: usize = 1;
pub const ENTRY_TYPE: usize = 4;
pub const ENTRY_END_CHS: usize = 5;
pub const ENTRY_START_LBA: usize = 8;
pub const ENTRY_SIZE_SECTORS: usize = 12;

/// Boot indicator of an active (bootable) partition.
pub const BOOT_ACTIVE: u8 = 0x80;
/// Boot indicator of an inactive partition.
pub const BOOT_INACTIVE: u8 = 0x00;
/// Partition type of an unused entry.
pub const TYPE_EMPTY: u8 = 0x00;
/// Partition type of the protective entry in front of a GPT.
pub const TYPE_GPT_PROTECTIVE: u8 = 0xEE;
/// Partition types of extended (container) partitions: DOS, Windows LBA, Linux.
pub const TYPES_EXTENDED: [u8; 3] = [0x05, 0x0F, 0x85];

/// Geometry used to compute CHS fields (what fdisk/sfdisk/parted use for
/// disks with no geometry of their own).
pub const CHS_HEADS: u64 = 255;
pub const CHS_SECTORS_PER_TRACK: u64 = 63;
/// Largest cylinder a CHS field holds; beyond it the field is clamped to
/// 1023/254/63.
pub const CHS_MAX_CYLINDER: u64 = 1023;
/// The clamped CHS field, as stored: head 254, sector 63 | cylinder bits 8-9, cylinder bits 0-7.
pub const CHS_CLAMPED: [u8; 3] = [0xFE, 0xFF, 0xFF];

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrEntry {
    pub boot_indicator: u8,
    pub start_chs: [u8; 3],
    pub partition_type: u8,
    pub end_chs: [u8; 3],
    pub start_lba: u32,
    pub size_sectors: u32,
}

impl MbrEntry {
    /// Parses the 16 bytes of an entry.
    pub fn parse(bytes: &[u8; ENTRY_SIZE]) -> MbrEntry {
        MbrEntry {
            boot_indicator: bytes[ENTRY_BOOT_INDICATOR],
            start_chs: chs_at(bytes, ENTRY_START_CHS),
            partition_type: bytes[ENTRY_TYPE],
            end_chs: chs_at(bytes, ENTRY_END_CHS),
            start_lba: u32_le_at(bytes, ENTRY_START_LBA),
            size_sectors: u32_le_at(bytes, ENTRY_SIZE_SECTORS),
        }
    }

    /// Serializes the entry, mirroring [`MbrEntry::parse`].
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut out = [0u8; ENTRY_SIZE];
        out[ENTRY_BOOT_INDICATOR] = self.boot_indicator;
        out[ENTRY_START_CHS..ENTRY_START_CHS + 3].copy_from_slice(&self.start_chs);
        out[ENTRY_TYPE] = self.partition_type;
        out[ENTRY_END_CHS..ENTRY_END_CHS + 3].copy_from_slice(&self.end_chs);
        out[ENTRY_START_LBA..ENTRY_START_LBA + 4].copy_from_slice(&self.start_lba.to_le_bytes());
        out[ENTRY_SIZE_SECTORS..ENTRY_SIZE_SECTORS + 4]
            .copy_from_slice(&self.size_sectors.to_le_bytes());
        out
    }

    /// An entry with type 0 and no sectors is unused.
    pub fn is_empty(&self) -> bool {
        self.partition_type == TYPE_EMPTY || self.size_sectors == 0
    }

    pub fn is_extended(&self) -> bool {
        TYPES_EXTENDED.contains(&self.partition_type)
    }

    /// Inclusive last sector, relative to the same base as `start_lba`.
    pub fn end_lba(&self) -> u64 {
        (u64::from(self.start_lba) + u64::from(self.size_sectors)).saturating_sub(1)
    }
}

fn chs_at(bytes: &[u8; ENTRY_SIZE], at: usize) -> [u8; 3] {
    [bytes[at], bytes[at + 1], bytes[at + 2]]
}

fn u32_le_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

/// An MBR (or EBR) sector: the boot code and everything else is kept as it
/// is so that writing it back changes only what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    pub raw: [u8; MBR_SIZE],
    pub disk_signature: u32,
    pub entries: [MbrEntry; ENTRY_COUNT],
}

impl Mbr {
    /// Parses a sector found at absolute byte `offset` (for error messages).
    /// Requires the 0x55AA signature and boot indicators of 0x00 or 0x80 (as
    /// libblkid does: anything else is not a partition table).
    pub fn parse(bytes: &[u8], offset: u64, structure: &'static str) -> Result<Mbr, FormatError> {
        let raw: [u8; MBR_SIZE] = bytes.try_into().map_err(|_| FormatError {
            structure,
            field: "length",
            offset,
            found: format!("{} bytes", bytes.len()),
            expected: format!("{MBR_SIZE} bytes"),
        })?;
        let signature = [raw[BOOT_SIGNATURE_OFFSET], raw[BOOT_SIGNATURE_OFFSET + 1]];
        if signature != BOOT_SIGNATURE {
            return Err(FormatError {
                structure,
                field: "boot_signature",
                offset: offset + offset_u64(BOOT_SIGNATURE_OFFSET),
                found: format!("{:02x} {:02x}", signature[0], signature[1]),
                expected: "55 aa".into(),
            });
        }
        let mut entries = [MbrEntry::parse(&[0; ENTRY_SIZE]); ENTRY_COUNT];
        for (i, entry) in entries.iter_mut().enumerate() {
            let at = ENTRIES_OFFSET + i * ENTRY_SIZE;
            let mut b = [0u8; ENTRY_SIZE];
            b.copy_from_slice(&raw[at..at + ENTRY_SIZE]);
            *entry = MbrEntry::parse(&b);
            if entry.boot_indicator != BOOT_ACTIVE && entry.boot_indicator != BOOT_INACTIVE {
                return Err(FormatError {
                    structure,
                    field: "boot_indicator",
                    offset: offset + offset_u64(at + ENTRY_BOOT_INDICATOR),
                    found: format!("{:#04x} (entry {})", entry.boot_indicator, i + 1),
                    expected: "0x00 or 0x80".into(),
                });
            }
        }
        Ok(Mbr {
            disk_signature: u32_le_at(&raw, DISK_SIGNATURE_OFFSET),
            raw,
            entries,
        })
    }

    /// The sector with the current entries written over the kept bytes.
    pub fn to_bytes(&self) -> [u8; MBR_SIZE] {
        let mut out = self.raw;
        out[DISK_SIGNATURE_OFFSET..DISK_SIGNATURE_OFFSET + 4]
            .copy_from_slice(&self.disk_signature.to_le_bytes());
        for (i, entry) in self.entries.iter().enumerate() {
            let at = ENTRIES_OFFSET + i * ENTRY_SIZE;
            out[at..at + ENTRY_SIZE].copy_from_slice(&entry.to_bytes());
        }
        out[BOOT_SIGNATURE_OFFSET..].copy_from_slice(&BOOT_SIGNATURE);
        out
    }
}

fn offset_u64(at: usize) -> u64 {
    // Offsets inside a 512-byte sector always fit.
    u64::try_from(at).unwrap_or(u64::MAX)
}

/// The CHS field for `lba` with 255 heads and 63 sectors per track, clamped
/// to 1023/254/63 beyond cylinder 1023 (what fdisk, sfdisk and parted write).
pub fn lba_to_chs(lba: u64) -> [u8; 3] {
    let per_cylinder = CHS_HEADS * CHS_SECTORS_PER_TRACK;
    let cylinder = lba / per_cylinder;
    if cylinder > CHS_MAX_CYLINDER {
        return CHS_CLAMPED;
    }
    let head = (lba / CHS_SECTORS_PER_TRACK) % CHS_HEADS;
    let sector = lba % CHS_SECTORS_PER_TRACK + 1;
    // All three fit their bit fields: head < 255, sector <= 63, cylinder <= 1023.
    let head = u8::try_from(head).unwrap_or(0xFE);
    let sector = u8::try_from(sector).unwrap_or(0x3F);
    let cyl_low = u8::try_from(cylinder & 0xFF).unwrap_or(0xFF);
    let cyl_high = u8::try_from((cylinder >> 2) & 0xC0).unwrap_or(0xC0);
    [head, sector | cyl_high, cyl_low]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> [u8; MBR_SIZE] {
        let mut s = [0u8; MBR_SIZE];
        s[0] = 0xEB; // some boot code, kept as is
        s[DISK_SIGNATURE_OFFSET..DISK_SIGNATURE_OFFSET + 4]
            .copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let e = MbrEntry {
            boot_indicator: BOOT_ACTIVE,
            start_chs: lba_to_chs(2048),
            partition_type: 0x83,
            end_chs: lba_to_chs(4095),
            start_lba: 2048,
            size_sectors: 2048,
        };
        s[ENTRIES_OFFSET..ENTRIES_OFFSET + ENTRY_SIZE].copy_from_slice(&e.to_bytes());
        s[BOOT_SIGNATURE_OFFSET..].copy_from_slice(&BOOT_SIGNATURE);
        s
    }

    #[test]
    fn round_trips() {
        let g = golden();
        let m = Mbr::parse(&g, 0, "MBR").unwrap();
        assert_eq!(m.disk_signature, 0x1234_5678);
        assert_eq!(m.entries[0].start_lba, 2048);
        assert_eq!(m.entries[0].end_lba(), 4095);
        assert!(m.entries[1].is_empty());
        assert_eq!(m.to_bytes(), g);
    }

    #[test]
    fn rejects_bad_signature_and_boot_indicator() {
        let mut g = golden();
        g[511] = 0;
        let e = Mbr::parse(&g, 0, "MBR").unwrap_err();
        assert_eq!((e.field, e.offset), ("boot_signature", 510));
        let mut g = golden();
        g[ENTRIES_OFFSET + ENTRY_SIZE] = 0x01;
        let e = Mbr::parse(&g, 0x200, "EBR").unwrap_err();
        assert_eq!(
            (e.structure, e.field, e.offset),
            ("EBR", "boot_indicator", 0x200 + 462)
        );
        assert!(Mbr::parse(&g[..100], 0, "MBR").is_err());
    }

    #[test]
    fn chs_matches_fdisk() {
        // Values as fdisk writes them for a 255/63 geometry.
        assert_eq!(lba_to_chs(0), [0, 1, 0]);
        assert_eq!(lba_to_chs(2048), [0x20, 0x21, 0x00]);
        assert_eq!(lba_to_chs(63 * 255 * 1023 + 62), [0, 0x3F | 0xC0, 0xFF]);
        assert_eq!(lba_to_chs(16_450_559), [0xFE, 0xFF, 0xFF]);
        assert_eq!(lba_to_chs(u64::MAX), CHS_CLAMPED);
    }
}
