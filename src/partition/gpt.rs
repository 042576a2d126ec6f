//! The GUID partition table header and entry array (UEFI 2.x §5.3): pure
//! parsing, validation and serialization of byte slices, with CRC32s.
//!
//! Header and array bytes are kept raw, and only the fields a grow changes
//! are patched into them, so that reserved bytes, names and attributes are
//! written back exactly as found.

use super::{SECTOR_BYTES, SECTOR_SIZE};
use crate::format::FormatError;

/// `EFI PART`.
pub const HEADER_SIGNATURE: [u8; 8] = *b"EFI PART";
/// The header revision every GPT in the wild carries (1.0).
pub const REVISION_1_0: u32 = 0x0001_0000;
/// Smallest header size (the fields defined by the specification).
pub const HEADER_MIN_SIZE: u32 = 92;
/// Largest header size: one logical block.
pub const HEADER_MAX_SIZE: u32 = SECTOR_SIZE as u32;
/// LBA of the primary header.
pub const PRIMARY_HEADER_LBA: u64 = 1;
/// Smallest entry size; the specification requires 128 × 2^n.
pub const ENTRY_MIN_SIZE: u32 = 128;
/// Largest entry size accepted (no tool writes more than 128).
pub const ENTRY_MAX_SIZE: u32 = 4096;
/// Largest entry array accepted, in bytes (the usual one is 16 KiB). Bounds
/// what an untrusted header can make us allocate.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 4 * 1024 * 1024;

// Header field offsets.
const H_SIGNATURE: usize = 0;
const H_REVISION: usize = 8;
const H_HEADER_SIZE: usize = 12;
const H_HEADER_CRC32: usize = 16;
pub(crate) const H_MY_LBA: usize = 24;
const H_ALTERNATE_LBA: usize = 32;
const H_FIRST_USABLE_LBA: usize = 40;
const H_LAST_USABLE_LBA: usize = 48;
const H_DISK_GUID: usize = 56;
const H_PARTITION_ENTRY_LBA: usize = 72;
const H_NUMBER_OF_PARTITION_ENTRIES: usize = 80;
const H_SIZE_OF_PARTITION_ENTRY: usize = 84;
const H_PARTITION_ENTRY_ARRAY_CRC32: usize = 88;

// Entry field offsets.
const E_PARTITION_TYPE_GUID: usize = 0;
const E_UNIQUE_PARTITION_GUID: usize = 16;
const E_STARTING_LBA: usize = 32;
const E_ENDING_LBA: usize = 40;
const E_ATTRIBUTES: usize = 48;
const E_PARTITION_NAME: usize = 56;
/// Bytes of the UTF-16LE name.
const E_PARTITION_NAME_LEN: usize = 72;

/// Attribute bit 2: legacy BIOS bootable.
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn guid_at(b: &[u8], at: usize) -> [u8; 16] {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[at..at + 16]);
    x
}

fn off(at: usize) -> u64 {
    u64::try_from(at).unwrap_or(u64::MAX)
}

/// Renders a GUID stored in the mixed-endian on-disk form, upper case like
/// sfdisk and sgdisk print it.
pub fn guid_string(bytes: [u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(bytes)
        .hyphenated()
        .to_string()
        .to_uppercase()
}

/// Where a header was read: the structure and byte offset its errors name.
#[derive(Clone, Copy)]
struct HeaderAt {
    structure: &'static str,
    offset: u64,
}

impl HeaderAt {
    fn err(self, field: &'static str, at: usize, found: String, expected: String) -> FormatError {
        FormatError {
            structure: self.structure,
            field,
            offset: self.offset.saturating_add(off(at)),
            found,
            expected,
        }
    }
}

/// The fields that say the sector is a header at all: signature, revision,
/// header size and the header's CRC32.
fn check_preamble(raw: &[u8; SECTOR_BYTES], at: HeaderAt) -> Result<(), FormatError> {
    if raw[H_SIGNATURE..H_SIGNATURE + 8] != HEADER_SIGNATURE {
        return Err(at.err(
            "signature",
            H_SIGNATURE,
            format!("{:?}", String::from_utf8_lossy(&raw[..8])),
            "\"EFI PART\"".into(),
        ));
    }
    let revision = u32_at(raw, H_REVISION);
    if revision != REVISION_1_0 {
        return Err(at.err(
            "revision",
            H_REVISION,
            format!("{revision:#010x}"),
            format!("{REVISION_1_0:#010x}"),
        ));
    }
    let header_size = u32_at(raw, H_HEADER_SIZE);
    if !(HEADER_MIN_SIZE..=HEADER_MAX_SIZE).contains(&header_size) {
        return Err(at.err(
            "header_size",
            H_HEADER_SIZE,
            header_size.to_string(),
            format!("{HEADER_MIN_SIZE} to {HEADER_MAX_SIZE}"),
        ));
    }
    let header_crc32 = u32_at(raw, H_HEADER_CRC32);
    let computed = header_crc(raw, header_size);
    if computed != header_crc32 {
        return Err(at.err(
            "header_crc32",
            H_HEADER_CRC32,
            format!("{header_crc32:#010x}"),
            format!("{computed:#010x} (computed)"),
        ));
    }
    Ok(())
}

/// A GPT header, its fields decoded, and the sector it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    pub raw: [u8; SECTOR_BYTES],
    pub revision: u32,
    pub header_size: u32,
    pub header_crc32: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable_lba: u64,
    pub last_usable_lba: u64,
    pub disk_guid: [u8; 16],
    pub partition_entry_lba: u64,
    pub number_of_partition_entries: u32,
    pub size_of_partition_entry: u32,
    pub partition_entry_array_crc32: u32,
}

impl GptHeader {
    /// Parses and validates the header sector read at byte `offset` of a
    /// disk of `disk_sectors` sectors: signature, revision, header size,
    /// header CRC32, LBAs inside the disk and in order, entry size and count
    /// bounded. The entry array CRC is checked by [`check_entries`].
    pub fn parse(
        sector: &[u8],
        offset: u64,
        disk_sectors: u64,
        structure: &'static str,
    ) -> Result<GptHeader, FormatError> {
        let at = HeaderAt { structure, offset };
        let raw: [u8; SECTOR_BYTES] = sector.try_into().map_err(|_| {
            at.err(
                "length",
                0,
                format!("{} bytes", sector.len()),
                format!("{SECTOR_BYTES} bytes"),
            )
        })?;
        check_preamble(&raw, at)?;
        let h = GptHeader::decode(raw);
        h.check_lbas(disk_sectors, at)?;
        h.check_entry_array(disk_sectors, at)?;
        Ok(h)
    }

    /// The header's fields read from its sector, unchecked.
    fn decode(raw: [u8; SECTOR_BYTES]) -> GptHeader {
        GptHeader {
            raw,
            revision: u32_at(&raw, H_REVISION),
            header_size: u32_at(&raw, H_HEADER_SIZE),
            header_crc32: u32_at(&raw, H_HEADER_CRC32),
            my_lba: u64_at(&raw, H_MY_LBA),
            alternate_lba: u64_at(&raw, H_ALTERNATE_LBA),
            first_usable_lba: u64_at(&raw, H_FIRST_USABLE_LBA),
            last_usable_lba: u64_at(&raw, H_LAST_USABLE_LBA),
            disk_guid: guid_at(&raw, H_DISK_GUID),
            partition_entry_lba: u64_at(&raw, H_PARTITION_ENTRY_LBA),
            number_of_partition_entries: u32_at(&raw, H_NUMBER_OF_PARTITION_ENTRIES),
            size_of_partition_entry: u32_at(&raw, H_SIZE_OF_PARTITION_ENTRY),
            partition_entry_array_crc32: u32_at(&raw, H_PARTITION_ENTRY_ARRAY_CRC32),
        }
    }

    /// Both header LBAs inside the disk, the usable area in order and inside it.
    fn check_lbas(&self, disk_sectors: u64, at: HeaderAt) -> Result<(), FormatError> {
        let last_lba = disk_sectors.saturating_sub(1);
        if self.my_lba >= disk_sectors {
            return Err(at.err(
                "my_lba",
                H_MY_LBA,
                self.my_lba.to_string(),
                format!("at most {last_lba} (disk has {disk_sectors} sectors)"),
            ));
        }
        if self.alternate_lba >= disk_sectors {
            return Err(at.err(
                "alternate_lba",
                H_ALTERNATE_LBA,
                self.alternate_lba.to_string(),
                format!("at most {last_lba} (disk has {disk_sectors} sectors)"),
            ));
        }
        Ok(())
    }

    /// Entry size and count bounded; the usable area in order and inside the
    /// disk; the array outside the usable area and inside the disk.
    fn check_entry_array(&self, disk_sectors: u64, at: HeaderAt) -> Result<(), FormatError> {
        let entry_size = self.size_of_partition_entry;
        if !(ENTRY_MIN_SIZE..=ENTRY_MAX_SIZE).contains(&entry_size) || !entry_size.is_power_of_two()
        {
            return Err(at.err(
                "size_of_partition_entry",
                H_SIZE_OF_PARTITION_ENTRY,
                entry_size.to_string(),
                format!("128 × 2^n, at most {ENTRY_MAX_SIZE}"),
            ));
        }
        let array_bytes = self.entry_array_bytes();
        if self.number_of_partition_entries == 0 || array_bytes > MAX_ENTRY_ARRAY_BYTES {
            return Err(at.err(
                "number_of_partition_entries",
                H_NUMBER_OF_PARTITION_ENTRIES,
                self.number_of_partition_entries.to_string(),
                format!(
                    "1 or more, with the array at most {MAX_ENTRY_ARRAY_BYTES} bytes \
                     ({entry_size}-byte entries)"
                ),
            ));
        }
        if self.first_usable_lba > self.last_usable_lba || self.last_usable_lba >= disk_sectors {
            return Err(at.err(
                "last_usable_lba",
                H_LAST_USABLE_LBA,
                format!(
                    "{} (first_usable_lba {})",
                    self.last_usable_lba, self.first_usable_lba
                ),
                format!("at least first_usable_lba and below the disk's {disk_sectors} sectors"),
            ));
        }
        let array_end = self
            .partition_entry_lba
            .saturating_add(self.entry_array_sectors());
        let array_ok = self.partition_entry_lba >= 2
            && array_end <= disk_sectors
            && (array_end <= self.first_usable_lba
                || self.partition_entry_lba > self.last_usable_lba);
        if !array_ok {
            return Err(at.err(
                "partition_entry_lba",
                H_PARTITION_ENTRY_LBA,
                format!(
                    "{} ({} sectors of entries)",
                    self.partition_entry_lba,
                    self.entry_array_sectors()
                ),
                format!(
                    "an array at LBA 2 or later, outside usable LBAs {}..={} and inside the disk",
                    self.first_usable_lba, self.last_usable_lba
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of the entry array the header describes (bounded by validation).
    pub fn entry_array_bytes(&self) -> u64 {
        u64::from(self.number_of_partition_entries) * u64::from(self.size_of_partition_entry)
    }

    /// Sectors the entry array occupies.
    pub fn entry_array_sectors(&self) -> u64 {
        self.entry_array_bytes().div_ceil(SECTOR_SIZE)
    }

    /// The header sector with the decoded fields patched into the kept bytes
    /// and the header CRC32 recomputed.
    pub fn to_bytes(&self) -> [u8; SECTOR_BYTES] {
        let mut out = self.raw;
        put_u64(&mut out, H_MY_LBA, self.my_lba);
        put_u64(&mut out, H_ALTERNATE_LBA, self.alternate_lba);
        put_u64(&mut out, H_FIRST_USABLE_LBA, self.first_usable_lba);
        put_u64(&mut out, H_LAST_USABLE_LBA, self.last_usable_lba);
        out[H_DISK_GUID..H_DISK_GUID + 16].copy_from_slice(&self.disk_guid);
        put_u64(&mut out, H_PARTITION_ENTRY_LBA, self.partition_entry_lba);
        put_u32(
            &mut out,
            H_NUMBER_OF_PARTITION_ENTRIES,
            self.number_of_partition_entries,
        );
        put_u32(
            &mut out,
            H_SIZE_OF_PARTITION_ENTRY,
            self.size_of_partition_entry,
        );
        put_u32(
            &mut out,
            H_PARTITION_ENTRY_ARRAY_CRC32,
            self.partition_entry_array_crc32,
        );
        let crc = header_crc(&out, self.header_size);
        put_u32(&mut out, H_HEADER_CRC32, crc);
        out
    }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// CRC32 of the first `header_size` bytes with the CRC field taken as zero.
fn header_crc(sector: &[u8; SECTOR_BYTES], header_size: u32) -> u32 {
    let len = usize::try_from(header_size)
        .unwrap_or(usize::MAX)
        .min(sector.len());
    let mut h = crc32fast::Hasher::new();
    h.update(&sector[..H_HEADER_CRC32]);
    h.update(&[0u8; 4]);
    h.update(&sector[H_HEADER_CRC32 + 4..len]);
    h.finalize()
}

/// Checks the entry array CRC32 over `number × size` bytes.
pub fn check_entries(
    header: &GptHeader,
    array: &[u8],
    offset: u64,
    structure: &'static str,
) -> Result<(), FormatError> {
    let computed = crc32fast::hash(array);
    if computed != header.partition_entry_array_crc32 {
        return Err(FormatError {
            structure,
            field: "partition_entry_array_crc32",
            offset: offset.saturating_add(off(H_PARTITION_ENTRY_ARRAY_CRC32)),
            found: format!("{:#010x}", header.partition_entry_array_crc32),
            expected: format!("{computed:#010x} (computed over the entry array)"),
        });
    }
    Ok(())
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    pub partition_type_guid: [u8; 16],
    pub unique_partition_guid: [u8; 16],
    pub starting_lba: u64,
    pub ending_lba: u64,
    pub attributes: u64,
    pub partition_name: String,
}

impl GptEntry {
    /// Parses an entry of at least 128 bytes.
    pub fn parse(bytes: &[u8]) -> Option<GptEntry> {
        if bytes.len() < usize::try_from(ENTRY_MIN_SIZE).ok()? {
            return None;
        }
        let name_bytes = &bytes[E_PARTITION_NAME..E_PARTITION_NAME + E_PARTITION_NAME_LEN];
        let units: Vec<u16> = name_bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Some(GptEntry {
            partition_type_guid: guid_at(bytes, E_PARTITION_TYPE_GUID),
            unique_partition_guid: guid_at(bytes, E_UNIQUE_PARTITION_GUID),
            starting_lba: u64_at(bytes, E_STARTING_LBA),
            ending_lba: u64_at(bytes, E_ENDING_LBA),
            attributes: u64_at(bytes, E_ATTRIBUTES),
            partition_name: String::from_utf16_lossy(&units),
        })
    }

    /// An entry whose type GUID is all zeros is unused.
    pub fn is_unused(&self) -> bool {
        self.partition_type_guid == [0; 16]
    }
}

/// Writes `ending_lba` into the entry at `index` of a raw array.
pub fn set_ending_lba(array: &mut [u8], entry_size: usize, index: usize, ending_lba: u64) -> bool {
    let Some(at) = index
        .checked_mul(entry_size)
        .and_then(|a| a.checked_add(E_ENDING_LBA))
    else {
        return false;
    };
    match array.get_mut(at..at + 8) {
        Some(slot) => {
            slot.copy_from_slice(&ending_lba.to_le_bytes());
            true
        }
        None => false,
    }
}

/// The byte offset of the ending_lba field inside an entry (for errors).
pub const ENDING_LBA_FIELD_OFFSET: usize = E_ENDING_LBA;
/// The byte offset of the starting_lba field inside an entry (for errors).
pub const STARTING_LBA_FIELD_OFFSET: usize = E_STARTING_LBA;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 1 MiB-disk GPT: header bytes and a 128 × 128 array with one entry.
    pub(crate) fn golden(disk_sectors: u64) -> ([u8; 512], Vec<u8>) {
        let mut array = vec![0u8; 128 * 128];
        array[0..16].copy_from_slice(&[0xAF; 16]);
        array[16..32].copy_from_slice(&[0x11; 16]);
        put_u64(&mut array, E_STARTING_LBA, 34);
        put_u64(&mut array, E_ENDING_LBA, 100);
        put_u64(&mut array, E_ATTRIBUTES, ATTR_LEGACY_BIOS_BOOTABLE);
        for (i, u) in "root".encode_utf16().enumerate() {
            array[E_PARTITION_NAME + 2 * i..E_PARTITION_NAME + 2 * i + 2]
                .copy_from_slice(&u.to_le_bytes());
        }
        let mut raw = [0u8; 512];
        raw[..8].copy_from_slice(&HEADER_SIGNATURE);
        put_u32(&mut raw, H_REVISION, REVISION_1_0);
        put_u32(&mut raw, H_HEADER_SIZE, 92);
        let h = GptHeader {
            raw,
            revision: REVISION_1_0,
            header_size: 92,
            header_crc32: 0,
            my_lba: 1,
            alternate_lba: disk_sectors - 1,
            first_usable_lba: 34,
            last_usable_lba: disk_sectors - 34,
            disk_guid: [0x42; 16],
            partition_entry_lba: 2,
            number_of_partition_entries: 128,
            size_of_partition_entry: 128,
            partition_entry_array_crc32: crc32fast::hash(&array),
        };
        (h.to_bytes(), array)
    }

    fn patched(f: impl FnOnce(&mut [u8; 512])) -> [u8; 512] {
        let (mut raw, _) = golden(2048);
        f(&mut raw);
        let crc = header_crc(&raw, 92);
        put_u32(&mut raw, H_HEADER_CRC32, crc);
        raw
    }

    #[test]
    fn golden_parses() {
        let (raw, array) = golden(2048);
        let h = GptHeader::parse(&raw, 512, 2048, "GPT header").unwrap();
        assert_eq!(h.alternate_lba, 2047);
        assert_eq!(h.entry_array_sectors(), 32);
        check_entries(&h, &array, 512, "GPT header").unwrap();
        assert_eq!(h.to_bytes(), raw);
        let e = GptEntry::parse(&array[..128]).unwrap();
        assert_eq!(e.partition_name, "root");
        assert_eq!((e.starting_lba, e.ending_lba), (34, 100));
        assert!(GptEntry::parse(&array[128..256]).unwrap().is_unused());
    }

    #[test]
    fn each_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut [u8; 512])>;
        let cases: Vec<(Mutation, &str, u64)> = vec![
            (Box::new(|r| r[0] = b'X'), "signature", 0),
            (Box::new(|r| put_u32(r, H_REVISION, 2)), "revision", 8),
            (
                Box::new(|r| put_u32(r, H_HEADER_SIZE, 91)),
                "header_size",
                12,
            ),
            (
                Box::new(|r| put_u64(r, H_ALTERNATE_LBA, 2048)),
                "alternate_lba",
                32,
            ),
            (
                Box::new(|r| put_u32(r, H_SIZE_OF_PARTITION_ENTRY, 96)),
                "size_of_partition_entry",
                84,
            ),
            (
                Box::new(|r| put_u32(r, H_SIZE_OF_PARTITION_ENTRY, 8192)),
                "size_of_partition_entry",
                84,
            ),
            (
                Box::new(|r| put_u32(r, H_NUMBER_OF_PARTITION_ENTRIES, u32::MAX)),
                "number_of_partition_entries",
                80,
            ),
            (
                Box::new(|r| put_u32(r, H_NUMBER_OF_PARTITION_ENTRIES, 0)),
                "number_of_partition_entries",
                80,
            ),
            (
                Box::new(|r| put_u64(r, H_LAST_USABLE_LBA, 10)),
                "last_usable_lba",
                48,
            ),
            (
                Box::new(|r| put_u64(r, H_PARTITION_ENTRY_LBA, 30)),
                "partition_entry_lba",
                72,
            ),
            (
                Box::new(|r| put_u64(r, H_PARTITION_ENTRY_LBA, u64::MAX)),
                "partition_entry_lba",
                72,
            ),
        ];
        for (mutate, field, at) in cases {
            let raw = patched(|r| mutate(r));
            let e = GptHeader::parse(&raw, 512, 2048, "GPT header").unwrap_err();
            assert_eq!((e.field, e.offset), (field, 512 + at), "{e}");
        }
    }

    #[test]
    fn header_crc_and_array_crc_are_checked() {
        let (mut raw, mut array) = golden(2048);
        raw[H_FIRST_USABLE_LBA] ^= 1;
        let e = GptHeader::parse(&raw, 512, 2048, "GPT header").unwrap_err();
        assert_eq!(e.field, "header_crc32");
        let (raw, _) = golden(2048);
        let h = GptHeader::parse(&raw, 512, 2048, "GPT header").unwrap();
        array[E_ENDING_LBA] ^= 1;
        let e = check_entries(&h, &array, 512, "GPT header").unwrap_err();
        assert_eq!(
            (e.field, e.offset),
            ("partition_entry_array_crc32", 512 + 88)
        );
    }

    #[test]
    fn guid_strings_are_mixed_endian() {
        let b = [
            0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47,
            0x7D, 0xE4,
        ];
        assert_eq!(guid_string(b), "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    }
}
