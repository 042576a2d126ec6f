//! The 1024-byte dynamic disk header and its eight parent locators.

use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{checksum, FormatError};

/// `cxsparse`: the dynamic header cookie.
pub const HEADER_COOKIE: [u8; 8] = *b"cxsparse";
/// Bytes in a dynamic header.
pub const HEADER_SIZE: usize = 1024;
/// The header size as a file offset.
pub const HEADER_SIZE_U64: u64 = 1024;
/// The only header version defined.
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// The header's data offset: unused, all 64 bits set.
pub const HEADER_DATA_OFFSET: u64 = u64::MAX;
/// Byte range of the checksum field inside the header.
pub const CHECKSUM_RANGE: std::ops::Range<usize> = 36..40;
/// Offset of the first parent locator inside the header.
pub const LOCATORS_OFFSET: usize = 576;
/// Number of parent locator entries.
pub const LOCATOR_COUNT: usize = 8;
/// Default block size: 2 MiB.
pub const DEFAULT_BLOCK_SIZE: u32 = 2 << 20;

/// One parent locator entry as laid out on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct RawLocator {
    pub platform_code: U32,
    pub platform_data_space: U32,
    pub platform_data_length: U32,
    pub reserved: U32,
    pub platform_data_offset: U64,
}

/// The dynamic header as laid out on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct RawHeader {
    pub cookie: [u8; 8],
    pub data_offset: U64,
    pub table_offset: U64,
    pub header_version: U32,
    pub max_table_entries: U32,
    pub block_size: U32,
    pub checksum: U32,
    pub parent_unique_id: [u8; 16],
    pub parent_time_stamp: U32,
    pub reserved1: U32,
    pub parent_unicode_name: [u8; 512],
    pub parent_locators: [RawLocator; LOCATOR_COUNT],
    pub reserved2: [u8; 256],
}

const _: () = assert!(std::mem::size_of::<RawHeader>() == HEADER_SIZE);

/// Smallest block size every major reader reads as the specification says:
/// below 4 KiB qemu computes a zero-byte sector bitmap (block size / 4096
/// rounded down) and reads each block's data from the bitmap's place.
pub const MIN_INTEROP_BLOCK_SIZE: u32 = 4096;

/// The block sizes Hyper-V reads in a VHD (512 KiB and 2 MiB).
pub const HYPERV_BLOCK_SIZES: [u32; 2] = [512 << 10, 2 << 20];

/// Most BAT entries qemu accepts (its table must stay under INT_MAX bytes).
pub const QEMU_MAX_TABLE_ENTRIES: u32 = (i32::MAX / 4) as u32;

/// Refuses a block size a writer must not use: not a power of two, below
/// [`MIN_INTEROP_BLOCK_SIZE`] (qemu reads such images as different data), or
/// above `max`. The error names the rule.
pub fn writable_block_size(block_size: u32, max: u32) -> Result<u32, String> {
    if !block_size.is_power_of_two() {
        return Err(format!("block size {block_size}: expected a power of two"));
    }
    if block_size < MIN_INTEROP_BLOCK_SIZE {
        return Err(format!(
            "block size {block_size}: expected at least {MIN_INTEROP_BLOCK_SIZE} (below 4 KiB qemu computes a zero-byte sector bitmap and reads different data)"
        ));
    }
    if block_size > max {
        return Err(format!("block size {block_size}: expected at most {max}"));
    }
    Ok(block_size)
}

/// Byte offsets of the dynamic header's fields, from [`RawHeader`]'s layout.
pub mod field {
    use super::{RawHeader, RawLocator};
    use std::mem::offset_of;
    pub const DATA_OFFSET: u64 = offset_of!(RawHeader, data_offset) as u64;
    pub const TABLE_OFFSET: u64 = offset_of!(RawHeader, table_offset) as u64;
    pub const HEADER_VERSION: u64 = offset_of!(RawHeader, header_version) as u64;
    pub const MAX_TABLE_ENTRIES: u64 = offset_of!(RawHeader, max_table_entries) as u64;
    pub const BLOCK_SIZE: u64 = offset_of!(RawHeader, block_size) as u64;
    pub const CHECKSUM: u64 = offset_of!(RawHeader, checksum) as u64;
    pub const PARENT_UNIQUE_ID: u64 = offset_of!(RawHeader, parent_unique_id) as u64;
    pub const RESERVED1: u64 = offset_of!(RawHeader, reserved1) as u64;
    pub const PARENT_UNICODE_NAME: u64 = offset_of!(RawHeader, parent_unicode_name) as u64;
    pub const PARENT_LOCATORS: u64 = offset_of!(RawHeader, parent_locators) as u64;
    /// Bytes of one locator entry.
    pub const LOCATOR_SIZE: u64 = std::mem::size_of::<RawLocator>() as u64;
    /// Offsets inside one locator entry.
    pub const LOCATOR_DATA_LENGTH: u64 = offset_of!(RawLocator, platform_data_length) as u64;
    pub const LOCATOR_DATA_OFFSET: u64 = offset_of!(RawLocator, platform_data_offset) as u64;

    /// The offset of locator `index` inside the header.
    pub const fn locator(index: usize) -> u64 {
        PARENT_LOCATORS + LOCATOR_SIZE * index as u64
    }
    const _: () = assert!(PARENT_LOCATORS == 576 && LOCATOR_SIZE == 24 && CHECKSUM == 36);
}

/// A locator's platform code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformCode {
    None,
    /// `Wi2r`: deprecated, relative ANSI path.
    Wi2r,
    /// `Wi2k`: deprecated, absolute ANSI path.
    Wi2k,
    /// `W2ru`: relative path, UTF-16LE.
    W2ru,
    /// `W2ku`: absolute path, UTF-16LE.
    W2ku,
    /// `Mac `: Mac OS alias blob.
    Mac,
    /// `MacX`: file URL, UTF-8.
    MacX,
    Unknown(u32),
}

impl PlatformCode {
    pub fn from_code(code: u32) -> PlatformCode {
        match code {
            0 => PlatformCode::None,
            0x5769_3272 => PlatformCode::Wi2r,
            0x5769_326B => PlatformCode::Wi2k,
            0x5732_7275 => PlatformCode::W2ru,
            0x5732_6B75 => PlatformCode::W2ku,
            0x4D61_6320 => PlatformCode::Mac,
            0x4D61_6358 => PlatformCode::MacX,
            other => PlatformCode::Unknown(other),
        }
    }

    pub fn code(self) -> u32 {
        match self {
            PlatformCode::None => 0,
            PlatformCode::Wi2r => 0x5769_3272,
            PlatformCode::Wi2k => 0x5769_326B,
            PlatformCode::W2ru => 0x5732_7275,
            PlatformCode::W2ku => 0x5732_6B75,
            PlatformCode::Mac => 0x4D61_6320,
            PlatformCode::MacX => 0x4D61_6358,
            PlatformCode::Unknown(c) => c,
        }
    }

    pub fn name(self) -> String {
        super::fourcc(self.code().to_be_bytes())
    }
}

/// One parent locator entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentLocator {
    pub platform_code: u32,
    pub platform_data_space: u32,
    pub platform_data_length: u32,
    pub reserved: u32,
    pub platform_data_offset: u64,
}

impl ParentLocator {
    pub fn code(&self) -> PlatformCode {
        PlatformCode::from_code(self.platform_code)
    }

    /// The space reserved for the locator's data, in bytes. The specification
    /// says sectors, but Virtual PC writes 512 and Windows 4096 or 65536: a
    /// value that is a multiple of 512 and at least the data length is bytes.
    pub fn data_space_bytes(&self) -> u64 {
        let space = u64::from(self.platform_data_space);
        let length = u64::from(self.platform_data_length);
        if space % 512 == 0 && space >= length && space > 0 {
            space
        } else {
            space * 512
        }
    }

    /// Decodes locator data into a path, by platform code.
    pub fn decode_path(&self, data: &[u8]) -> Option<String> {
        match self.code() {
            PlatformCode::W2ru | PlatformCode::W2ku => {
                let units: Vec<u16> = data
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                Some(String::from_utf16_lossy(&units))
            }
            PlatformCode::Wi2r | PlatformCode::Wi2k => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                Some(String::from_utf8_lossy(&data[..end]).into_owned())
            }
            PlatformCode::MacX => {
                let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
                let text = String::from_utf8_lossy(&data[..end]).into_owned();
                Some(
                    text.strip_prefix("file://")
                        .map(|s| s.to_string())
                        .unwrap_or(text),
                )
            }
            _ => None,
        }
    }
}

/// The dynamic disk header, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    pub data_offset: u64,
    pub table_offset: u64,
    pub header_version: u32,
    pub max_table_entries: u32,
    pub block_size: u32,
    pub checksum: u32,
    pub parent_unique_id: [u8; 16],
    pub parent_time_stamp: u32,
    pub reserved1: u32,
    pub parent_unicode_name: [u8; 512],
    pub parent_locators: [ParentLocator; LOCATOR_COUNT],
    pub reserved2: [u8; 256],
}

impl DynamicHeader {
    /// Parses a header found at absolute `offset`; only the cookie and length
    /// are required here.
    pub fn parse(bytes: &[u8], offset: u64) -> Result<DynamicHeader, FormatError> {
        let raw = RawHeader::ref_from_bytes(bytes).map_err(|_| FormatError {
            structure: "dynamic header",
            field: "length",
            offset,
            found: format!("{} bytes", bytes.len()),
            expected: "1024 bytes".into(),
        })?;
        if raw.cookie != HEADER_COOKIE {
            return Err(FormatError {
                structure: "dynamic header",
                field: "cookie",
                offset,
                found: super::escape_bytes(&raw.cookie),
                expected: "\"cxsparse\"".into(),
            });
        }
        let parent_locators = raw.parent_locators.map(|l| ParentLocator {
            platform_code: l.platform_code.get(),
            platform_data_space: l.platform_data_space.get(),
            platform_data_length: l.platform_data_length.get(),
            reserved: l.reserved.get(),
            platform_data_offset: l.platform_data_offset.get(),
        });
        Ok(DynamicHeader {
            data_offset: raw.data_offset.get(),
            table_offset: raw.table_offset.get(),
            header_version: raw.header_version.get(),
            max_table_entries: raw.max_table_entries.get(),
            block_size: raw.block_size.get(),
            checksum: raw.checksum.get(),
            parent_unique_id: raw.parent_unique_id,
            parent_time_stamp: raw.parent_time_stamp.get(),
            reserved1: raw.reserved1.get(),
            parent_unicode_name: raw.parent_unicode_name,
            parent_locators,
            reserved2: raw.reserved2,
        })
    }

    /// Serializes field by field, the stored checksum as it is.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let raw = RawHeader {
            cookie: HEADER_COOKIE,
            data_offset: self.data_offset.into(),
            table_offset: self.table_offset.into(),
            header_version: self.header_version.into(),
            max_table_entries: self.max_table_entries.into(),
            block_size: self.block_size.into(),
            checksum: self.checksum.into(),
            parent_unique_id: self.parent_unique_id,
            parent_time_stamp: self.parent_time_stamp.into(),
            reserved1: self.reserved1.into(),
            parent_unicode_name: self.parent_unicode_name,
            parent_locators: self.parent_locators.map(|l| RawLocator {
                platform_code: l.platform_code.into(),
                platform_data_space: l.platform_data_space.into(),
                platform_data_length: l.platform_data_length.into(),
                reserved: l.reserved.into(),
                platform_data_offset: l.platform_data_offset.into(),
            }),
            reserved2: self.reserved2,
        };
        let mut out = [0u8; HEADER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    pub fn computed_checksum(&self) -> u32 {
        checksum(&self.to_bytes(), CHECKSUM_RANGE)
    }

    pub fn seal(&mut self) {
        self.checksum = self.computed_checksum();
    }

    /// The parent's name, decoded from UTF-16 big-endian up to the first NUL.
    pub fn parent_name(&self) -> String {
        let units: Vec<u16> = self
            .parent_unicode_name
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        String::from_utf16_lossy(&units)
    }

    /// Stores `name` as UTF-16BE, truncated to the field's 256 units.
    pub fn set_parent_name(&mut self, name: &str) {
        self.parent_unicode_name = [0; 512];
        for (i, unit) in name.encode_utf16().take(256).enumerate() {
            let b = unit.to_be_bytes();
            self.parent_unicode_name[2 * i] = b[0];
            self.parent_unicode_name[2 * i + 1] = b[1];
        }
    }

    /// A new header for a dynamic disk, sealed.
    pub fn new(table_offset: u64, max_table_entries: u32, block_size: u32) -> DynamicHeader {
        let mut h = DynamicHeader {
            data_offset: HEADER_DATA_OFFSET,
            table_offset,
            header_version: HEADER_VERSION,
            max_table_entries,
            block_size,
            checksum: 0,
            parent_unique_id: [0; 16],
            parent_time_stamp: 0,
            reserved1: 0,
            parent_unicode_name: [0; 512],
            parent_locators: [ParentLocator {
                platform_code: 0,
                platform_data_space: 0,
                platform_data_length: 0,
                reserved: 0,
                platform_data_offset: 0,
            }; LOCATOR_COUNT],
            reserved2: [0; 256],
        };
        h.seal();
        h
    }

    /// Bytes in one block's sector bitmap, padded to whole sectors.
    pub fn bitmap_size_bytes(&self) -> u64 {
        bitmap_size_bytes(self.block_size)
    }
}

/// Bytes in the sector bitmap of a block of `block_size` bytes: one bit per
/// sector, padded to a multiple of 512.
pub fn bitmap_size_bytes(block_size: u32) -> u64 {
    let sectors = u64::from(block_size).div_ceil(512);
    sectors.div_ceil(8).next_multiple_of(512)
}

/// Encodes a path as UTF-16LE, as W2ru and W2ku locators hold it.
pub fn encode_utf16le(path: &str) -> Vec<u8> {
    path.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> [u8; HEADER_SIZE] {
        let mut h = DynamicHeader::new(1536, 512, DEFAULT_BLOCK_SIZE);
        h.set_parent_name("parent.vhd");
        h.parent_locators[0] = ParentLocator {
            platform_code: PlatformCode::W2ru.code(),
            platform_data_space: 512,
            platform_data_length: 20,
            reserved: 0,
            platform_data_offset: 0x1000,
        };
        h.seal();
        h.to_bytes()
    }

    #[test]
    fn golden_round_trips() {
        let bytes = golden();
        let h = DynamicHeader::parse(&bytes, 512).unwrap();
        assert_eq!(h.to_bytes(), bytes);
        assert_eq!(h.checksum, h.computed_checksum());
        assert_eq!(h.parent_name(), "parent.vhd");
        assert_eq!(&bytes[0..8], b"cxsparse");
        assert_eq!(&bytes[8..16], &[0xff; 8]);
        assert_eq!(&bytes[32..36], &(2u32 << 20).to_be_bytes());
        assert_eq!(&bytes[576..580], b"W2ru");
    }

    #[test]
    fn wrong_cookie_is_named() {
        let mut bytes = golden();
        bytes[2] = 0;
        let e = DynamicHeader::parse(&bytes, 512).unwrap_err();
        assert_eq!((e.field, e.offset), ("cookie", 512));
    }

    #[test]
    fn data_space_in_bytes_or_sectors() {
        let mut l = DynamicHeader::parse(&golden(), 512)
            .unwrap()
            .parent_locators[0];
        assert_eq!(l.data_space_bytes(), 512);
        l.platform_data_space = 1;
        assert_eq!(l.data_space_bytes(), 512);
        l.platform_data_space = 65536;
        assert_eq!(l.data_space_bytes(), 65536);
    }

    #[test]
    fn locator_paths_decode() {
        let l = DynamicHeader::parse(&golden(), 512)
            .unwrap()
            .parent_locators[0];
        assert_eq!(
            l.decode_path(&encode_utf16le(".\\p.vhd")).unwrap(),
            ".\\p.vhd"
        );
    }

    #[test]
    fn bitmap_sizes() {
        assert_eq!(bitmap_size_bytes(2 << 20), 512);
        assert_eq!(bitmap_size_bytes(512 << 10), 512);
        assert_eq!(bitmap_size_bytes(32 << 20), 8192);
        assert_eq!(bitmap_size_bytes(512), 512);
    }
}
