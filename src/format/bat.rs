//! The block allocation table and sector bitmaps.

use zerocopy::byteorder::big_endian::U32;
use zerocopy::FromBytes;

use super::FormatError;

/// A BAT entry for a block that is not allocated.
pub const BAT_UNUSED: u32 = 0xFFFF_FFFF;
/// Bytes of one BAT entry (a big-endian sector number).
pub const ENTRY_SIZE: u64 = 4;

/// The BAT: one big-endian u32 sector number per block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bat {
    pub entries: Vec<u32>,
}

impl Bat {
    /// Parses `entries` values from `bytes` (which may hold padding after them).
    pub fn parse(bytes: &[u8], entries: u32, offset: u64) -> Result<Bat, FormatError> {
        let needed = usize::try_from(entries)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        let slice = bytes.get(..needed).ok_or_else(|| FormatError {
            structure: "BAT",
            field: "max table entries",
            offset,
            found: format!("{entries} entries ({needed} bytes)"),
            expected: format!("at most {} bytes available", bytes.len()),
        })?;
        let view = <[U32]>::ref_from_bytes(slice).map_err(|_| FormatError {
            structure: "BAT",
            field: "length",
            offset,
            found: format!("{} bytes", slice.len()),
            expected: "a multiple of 4".into(),
        })?;
        Ok(Bat {
            entries: view.iter().map(|e| e.get()).collect(),
        })
    }

    /// Serializes, padded with 0xFF to a multiple of 512 bytes as writers do.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out: Vec<u8> = self.entries.iter().flat_map(|e| e.to_be_bytes()).collect();
        let padded = table_size_bytes(self.entries.len() as u64);
        out.resize(usize::try_from(padded).unwrap_or(out.len()), 0xFF);
        out
    }

    /// The sector number of block `block_index`, or `None` if not allocated.
    pub fn sector(&self, block_index: usize) -> Option<u32> {
        match self.entries.get(block_index) {
            Some(&BAT_UNUSED) | None => None,
            Some(&s) => Some(s),
        }
    }

    pub fn allocated_count(&self) -> usize {
        self.entries.iter().filter(|&&e| e != BAT_UNUSED).count()
    }
}

/// Bytes the BAT of `entries` entries occupies on disk, padded to 512.
pub fn table_size_bytes(entries: u64) -> u64 {
    (entries * 4).next_multiple_of(512)
}

/// Whether sector `sector_in_block` is marked present in `bitmap` (MSB first).
pub fn bitmap_bit(bitmap: &[u8], sector_in_block: usize) -> bool {
    bitmap
        .get(sector_in_block / 8)
        .is_some_and(|b| b & (0x80 >> (sector_in_block % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let bat = Bat {
            entries: vec![3, BAT_UNUSED, 0x1234],
        };
        let bytes = bat.to_bytes();
        assert_eq!(bytes.len(), 512);
        assert_eq!(&bytes[..4], &[0, 0, 0, 3]);
        assert_eq!(&bytes[12..16], &[0xff; 4]);
        assert_eq!(Bat::parse(&bytes, 3, 0).unwrap(), bat);
        assert_eq!(bat.sector(1), None);
        assert_eq!(bat.sector(2), Some(0x1234));
        assert_eq!(bat.allocated_count(), 2);
    }

    #[test]
    fn too_many_entries_is_an_error() {
        let e = Bat::parse(&[0u8; 512], 1000, 0x600).unwrap_err();
        assert_eq!(e.field, "max table entries");
        assert_eq!(e.offset, 0x600);
    }

    #[test]
    fn bitmap_is_msb_first() {
        let bm = [0b1000_0001u8, 0];
        assert!(bitmap_bit(&bm, 0));
        assert!(!bitmap_bit(&bm, 1));
        assert!(bitmap_bit(&bm, 7));
        assert!(!bitmap_bit(&bm, 8));
        assert!(!bitmap_bit(&bm, 999));
    }
}
