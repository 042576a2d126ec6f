//! XenServer's batmap extension (blktap `tdbatmap`): a 512-byte header right
//! after the padded BAT, then one bit per block that is fully written.

use zerocopy::byteorder::big_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{checksum, FormatError};

/// `tdbatmap`: the batmap header cookie.
pub const BATMAP_COOKIE: [u8; 8] = *b"tdbatmap";
/// Bytes in the batmap header.
pub const BATMAP_HEADER_SIZE: usize = 512;
/// [`BATMAP_HEADER_SIZE`] as a file offset.
pub const BATMAP_HEADER_SIZE_U64: u64 = 512;

/// The batmap header as laid out on disk.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
pub struct RawBatmapHeader {
    pub cookie: [u8; 8],
    pub batmap_offset: U64,
    /// Size of the bitmap in sectors.
    pub batmap_size: U32,
    pub batmap_version: U32,
    /// Checksum of the bitmap bytes (one's complement of the byte sum).
    pub checksum: U32,
    pub marker: u8,
    pub reserved: [u8; 483],
}

/// Byte offsets of the batmap header's fields, from [`RawBatmapHeader`].
pub mod field {
    use super::RawBatmapHeader;
    use std::mem::offset_of;
    pub const BATMAP_OFFSET: u64 = offset_of!(RawBatmapHeader, batmap_offset) as u64;
    pub const BATMAP_SIZE: u64 = offset_of!(RawBatmapHeader, batmap_size) as u64;
    pub const CHECKSUM: u64 = offset_of!(RawBatmapHeader, checksum) as u64;
}

const _: () = assert!(std::mem::size_of::<RawBatmapHeader>() == BATMAP_HEADER_SIZE);

/// The batmap header, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batmap {
    pub batmap_offset: u64,
    pub batmap_size_sectors: u32,
    pub batmap_version: u32,
    pub checksum: u32,
    pub marker: u8,
}

impl Batmap {
    /// Parses a batmap header; `Ok(None)` when the cookie is absent (no batmap).
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Option<Batmap>, FormatError> {
        let raw = RawBatmapHeader::ref_from_bytes(bytes).map_err(|_| FormatError {
            structure: "batmap header",
            field: "length",
            offset,
            found: format!("{} bytes", bytes.len()),
            expected: "512 bytes".into(),
        })?;
        if raw.cookie != BATMAP_COOKIE {
            return Ok(None);
        }
        Ok(Some(Batmap {
            batmap_offset: raw.batmap_offset.get(),
            batmap_size_sectors: raw.batmap_size.get(),
            batmap_version: raw.batmap_version.get(),
            checksum: raw.checksum.get(),
            marker: raw.marker,
        }))
    }

    pub fn to_bytes(&self) -> [u8; BATMAP_HEADER_SIZE] {
        let raw = RawBatmapHeader {
            cookie: BATMAP_COOKIE,
            batmap_offset: self.batmap_offset.into(),
            batmap_size: self.batmap_size_sectors.into(),
            batmap_version: self.batmap_version.into(),
            checksum: self.checksum.into(),
            marker: self.marker,
            reserved: [0; 483],
        };
        let mut out = [0u8; BATMAP_HEADER_SIZE];
        out.copy_from_slice(raw.as_bytes());
        out
    }

    /// The checksum the bitmap bytes should carry.
    pub fn bitmap_checksum(map: &[u8]) -> u32 {
        checksum(map, 0..0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = Batmap {
            batmap_offset: 0x1000,
            batmap_size_sectors: 1,
            batmap_version: 0x0001_0002,
            checksum: 0x1234,
            marker: 0,
        };
        let bytes = b.to_bytes();
        assert_eq!(&bytes[..8], b"tdbatmap");
        assert_eq!(Batmap::parse(&bytes, 0).unwrap(), Some(b));
        assert_eq!(Batmap::parse(&[0u8; 512], 0).unwrap(), None);
    }
}
