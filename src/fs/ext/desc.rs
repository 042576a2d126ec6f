//! Group descriptors: 32 bytes each, or `s_desc_size` (64 or more) with the
//! 64bit feature, where the `_hi` halves live past byte 32. The table is
//! kept as the raw bytes it is on disk; accessors read and write fields at
//! their named offsets.

use super::csum::{crc16, crc32c_raw};
use super::error::Problem;
use super::geometry::Geometry;
use super::superblock::Superblock;

const BG_BLOCK_BITMAP_LO: usize = 0x00;
const BG_INODE_BITMAP_LO: usize = 0x04;
const BG_INODE_TABLE_LO: usize = 0x08;
const BG_FREE_BLOCKS_COUNT_LO: usize = 0x0C;
const BG_FREE_INODES_COUNT_LO: usize = 0x0E;
const BG_USED_DIRS_COUNT_LO: usize = 0x10;
const BG_FLAGS: usize = 0x12;
const BG_BLOCK_BITMAP_CSUM_LO: usize = 0x18;
const BG_INODE_BITMAP_CSUM_LO: usize = 0x1A;
const BG_ITABLE_UNUSED_LO: usize = 0x1C;
const BG_CHECKSUM: usize = 0x1E;
const BG_BLOCK_BITMAP_HI: usize = 0x20;
const BG_INODE_BITMAP_HI: usize = 0x24;
const BG_INODE_TABLE_HI: usize = 0x28;
const BG_FREE_BLOCKS_COUNT_HI: usize = 0x2C;
const BG_FREE_INODES_COUNT_HI: usize = 0x2E;
const BG_USED_DIRS_COUNT_HI: usize = 0x30;
const BG_ITABLE_UNUSED_HI: usize = 0x32;
const BG_BLOCK_BITMAP_CSUM_HI: usize = 0x38;
const BG_INODE_BITMAP_CSUM_HI: usize = 0x3A;
/// Descriptors at least this long hold the `_hi` halves of the bitmap sums.
const BLOCK_BITMAP_CSUM_HI_END: usize = 0x3A;
const INODE_BITMAP_CSUM_HI_END: usize = 0x3C;
/// The first byte past the 32-bit descriptor.
const DESC_32_END: usize = 0x20;

/// `bg_flags` bits.
pub const BG_INODE_UNINIT: u16 = 0x0001;
pub const BG_BLOCK_UNINIT: u16 = 0x0002;

/// A table of group descriptors, as its on-disk bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescs {
    bytes: Vec<u8>,
    desc_size: usize,
}

impl GroupDescs {
    /// `bytes` holds at least `count` descriptors of `desc_size` bytes.
    pub fn from_bytes(mut bytes: Vec<u8>, desc_size: usize, count: usize) -> Option<GroupDescs> {
        let len = desc_size.checked_mul(count)?;
        if bytes.len() < len || desc_size < DESC_32_END {
            return None;
        }
        bytes.truncate(len);
        Some(GroupDescs { bytes, desc_size })
    }

    pub fn count(&self) -> usize {
        self.bytes.len() / self.desc_size
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends zeroed descriptors up to `count`.
    pub fn grow_to(&mut self, count: usize) {
        self.bytes.resize(count * self.desc_size, 0);
    }

    fn desc(&self, group: usize) -> &[u8] {
        let start = group * self.desc_size;
        &self.bytes[start..start + self.desc_size]
    }

    fn desc_mut(&mut self, group: usize) -> &mut [u8] {
        let start = group * self.desc_size;
        &mut self.bytes[start..start + self.desc_size]
    }

    fn get16(&self, group: usize, off: usize) -> u16 {
        let d = self.desc(group);
        u16::from_le_bytes([d[off], d[off + 1]])
    }
    fn get32(&self, group: usize, off: usize) -> u32 {
        let d = self.desc(group);
        u32::from_le_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]])
    }
    fn put16(&mut self, group: usize, off: usize, v: u16) {
        self.desc_mut(group)[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(&mut self, group: usize, off: usize, v: u32) {
        self.desc_mut(group)[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn wide(&self) -> bool {
        self.desc_size > DESC_32_END
    }
    fn get_split32(&self, group: usize, lo: usize, hi: usize) -> u64 {
        let high = if self.wide() {
            self.get32(group, hi)
        } else {
            0
        };
        (u64::from(high) << 32) | u64::from(self.get32(group, lo))
    }
    fn put_split32(&mut self, group: usize, lo: usize, hi: usize, v: u64) {
        self.put32(group, lo, (v & 0xFFFF_FFFF) as u32);
        if self.wide() {
            self.put32(group, hi, (v >> 32) as u32);
        }
    }
    fn get_split16(&self, group: usize, lo: usize, hi: usize) -> u32 {
        let high = if self.wide() {
            self.get16(group, hi)
        } else {
            0
        };
        (u32::from(high) << 16) | u32::from(self.get16(group, lo))
    }
    fn put_split16(&mut self, group: usize, lo: usize, hi: usize, v: u32) {
        self.put16(group, lo, (v & 0xFFFF) as u16);
        if self.wide() {
            self.put16(group, hi, (v >> 16) as u16);
        }
    }

    pub fn block_bitmap(&self, g: usize) -> u64 {
        self.get_split32(g, BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI)
    }
    pub fn set_block_bitmap(&mut self, g: usize, v: u64) {
        self.put_split32(g, BG_BLOCK_BITMAP_LO, BG_BLOCK_BITMAP_HI, v)
    }
    pub fn inode_bitmap(&self, g: usize) -> u64 {
        self.get_split32(g, BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI)
    }
    pub fn set_inode_bitmap(&mut self, g: usize, v: u64) {
        self.put_split32(g, BG_INODE_BITMAP_LO, BG_INODE_BITMAP_HI, v)
    }
    pub fn inode_table(&self, g: usize) -> u64 {
        self.get_split32(g, BG_INODE_TABLE_LO, BG_INODE_TABLE_HI)
    }
    pub fn set_inode_table(&mut self, g: usize, v: u64) {
        self.put_split32(g, BG_INODE_TABLE_LO, BG_INODE_TABLE_HI, v)
    }
    pub fn free_blocks(&self, g: usize) -> u32 {
        self.get_split16(g, BG_FREE_BLOCKS_COUNT_LO, BG_FREE_BLOCKS_COUNT_HI)
    }
    pub fn set_free_blocks(&mut self, g: usize, v: u32) {
        self.put_split16(g, BG_FREE_BLOCKS_COUNT_LO, BG_FREE_BLOCKS_COUNT_HI, v)
    }
    pub fn free_inodes(&self, g: usize) -> u32 {
        self.get_split16(g, BG_FREE_INODES_COUNT_LO, BG_FREE_INODES_COUNT_HI)
    }
    pub fn set_free_inodes(&mut self, g: usize, v: u32) {
        self.put_split16(g, BG_FREE_INODES_COUNT_LO, BG_FREE_INODES_COUNT_HI, v)
    }
    pub fn used_dirs(&self, g: usize) -> u32 {
        self.get_split16(g, BG_USED_DIRS_COUNT_LO, BG_USED_DIRS_COUNT_HI)
    }
    pub fn itable_unused(&self, g: usize) -> u32 {
        self.get_split16(g, BG_ITABLE_UNUSED_LO, BG_ITABLE_UNUSED_HI)
    }
    pub fn set_used_dirs(&mut self, g: usize, v: u32) {
        self.put_split16(g, BG_USED_DIRS_COUNT_LO, BG_USED_DIRS_COUNT_HI, v)
    }
    pub fn set_itable_unused(&mut self, g: usize, v: u32) {
        self.put_split16(g, BG_ITABLE_UNUSED_LO, BG_ITABLE_UNUSED_HI, v)
    }
    pub fn flags(&self, g: usize) -> u16 {
        self.get16(g, BG_FLAGS)
    }
    pub fn set_flags(&mut self, g: usize, v: u16) {
        self.put16(g, BG_FLAGS, v)
    }
    pub fn checksum(&self, g: usize) -> u16 {
        self.get16(g, BG_CHECKSUM)
    }

    /// Group `g`'s block bitmap, inode bitmap and inode table, each as
    /// (field name, field offset in the descriptor, first block, blocks),
    /// the table `inode_blocks_per_group` long.
    pub fn table_locations(
        &self,
        g: usize,
        inode_blocks_per_group: u64,
    ) -> [(&'static str, u64, u64, u64); 3] {
        [
            (
                "bg_block_bitmap",
                BG_BLOCK_BITMAP_LO as u64,
                self.block_bitmap(g),
                1,
            ),
            (
                "bg_inode_bitmap",
                BG_INODE_BITMAP_LO as u64,
                self.inode_bitmap(g),
                1,
            ),
            (
                "bg_inode_table",
                BG_INODE_TABLE_LO as u64,
                self.inode_table(g),
                inode_blocks_per_group,
            ),
        ]
    }

    /// Stores a block bitmap's CRC32C (the high half only where the
    /// descriptor is long enough to hold it).
    pub fn set_block_bitmap_csum(&mut self, g: usize, crc: u32) {
        self.put16(g, BG_BLOCK_BITMAP_CSUM_LO, (crc & 0xFFFF) as u16);
        if self.desc_size >= BLOCK_BITMAP_CSUM_HI_END {
            self.put16(g, BG_BLOCK_BITMAP_CSUM_HI, (crc >> 16) as u16);
        }
    }
    pub fn set_inode_bitmap_csum(&mut self, g: usize, crc: u32) {
        self.put16(g, BG_INODE_BITMAP_CSUM_LO, (crc & 0xFFFF) as u16);
        if self.desc_size >= INODE_BITMAP_CSUM_HI_END {
            self.put16(g, BG_INODE_BITMAP_CSUM_HI, (crc >> 16) as u16);
        }
    }
    /// The stored block bitmap sum, masked to what the descriptor holds.
    pub fn block_bitmap_csum(&self, g: usize) -> (u32, u32) {
        let lo = u32::from(self.get16(g, BG_BLOCK_BITMAP_CSUM_LO));
        if self.desc_size >= BLOCK_BITMAP_CSUM_HI_END {
            (
                lo | u32::from(self.get16(g, BG_BLOCK_BITMAP_CSUM_HI)) << 16,
                !0,
            )
        } else {
            (lo, 0xFFFF)
        }
    }

    /// The descriptor checksum ext4 expects for group `g`: CRC32C-based
    /// with metadata_csum, CRC16 with uninit_bg, none otherwise.
    pub fn compute_checksum(&self, sb: &Superblock, g: usize) -> Option<u16> {
        let d = self.desc(g);
        // Group numbers are u32 on disk; the table never exceeds that.
        let group = u32::try_from(g).unwrap_or(u32::MAX).to_le_bytes();
        if sb.metadata_csum() {
            let mut crc = crc32c_raw(sb.csum_seed(), &group);
            crc = crc32c_raw(crc, &d[..BG_CHECKSUM]);
            crc = crc32c_raw(crc, &[0, 0]);
            crc = crc32c_raw(crc, &d[BG_CHECKSUM + 2..]);
            Some((crc & 0xFFFF) as u16)
        } else if sb.group_desc_csum() {
            let mut crc = crc16(!0, &sb.uuid);
            crc = crc16(crc, &group);
            crc = crc16(crc, &d[..BG_CHECKSUM]);
            crc = crc16(crc, &d[BG_CHECKSUM + 2..]);
            Some(crc)
        } else {
            None
        }
    }

    pub fn seal(&mut self, sb: &Superblock, g: usize) {
        if let Some(sum) = self.compute_checksum(sb, g) {
            self.put16(g, BG_CHECKSUM, sum);
        }
    }
}

/// Every group's descriptor checksum, and its bitmaps and inode table
/// inside the filesystem past the first data block: the checks both the
/// grower and the free-space reader make before trusting a descriptor
/// table. `desc_offset(g)` is the byte offset of group `g`'s descriptor.
pub fn check_groups(
    sb: &Superblock,
    geo: &Geometry,
    descs: &GroupDescs,
    desc_offset: &dyn Fn(u64) -> u64,
) -> Result<(), Problem> {
    for (gi, g) in (0..descs.count()).zip(0u64..) {
        if let Some(computed) = descs.compute_checksum(sb, gi) {
            let stored = descs.checksum(gi);
            if stored != computed {
                return Err(Problem {
                    structure: "group descriptor",
                    field: "bg_checksum",
                    offset: desc_offset(g) + BG_CHECKSUM as u64,
                    found: format!("{stored:#06x} (group {g})"),
                    expected: format!("{computed:#06x} (computed)"),
                });
            }
        }
        for (field, off, block, len) in descs.table_locations(gi, geo.inode_blocks_per_group) {
            if block <= geo.first_data_block || block.saturating_add(len) > geo.blocks_count {
                return Err(Problem {
                    structure: "group descriptor",
                    field,
                    offset: desc_offset(g) + off,
                    found: format!("{block} (group {g})"),
                    expected: format!(
                        "a block inside {}..{}",
                        geo.first_data_block + 1,
                        geo.blocks_count
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::superblock::tests::golden;
    use super::super::superblock::{Superblock, SUPERBLOCK_OFFSET};
    use super::*;

    #[test]
    fn fields_round_trip_in_64_byte_descriptors() {
        let mut d = GroupDescs::from_bytes(vec![0; 128], 64, 2).unwrap();
        d.set_block_bitmap(1, 0x1_2345_6789);
        d.set_free_blocks(1, 0x1_0002);
        d.set_flags(1, BG_BLOCK_UNINIT);
        assert_eq!(d.block_bitmap(1), 0x1_2345_6789);
        assert_eq!(d.free_blocks(1), 0x1_0002);
        assert_eq!(d.flags(1), BG_BLOCK_UNINIT);
        assert_eq!(d.block_bitmap(0), 0);
        let sb = Superblock::parse(&golden(), SUPERBLOCK_OFFSET).unwrap();
        d.seal(&sb, 1);
        assert_eq!(Some(d.checksum(1)), d.compute_checksum(&sb, 1));
        assert_ne!(d.compute_checksum(&sb, 0), d.compute_checksum(&sb, 1));
    }

    #[test]
    fn short_tables_are_refused() {
        assert!(GroupDescs::from_bytes(vec![0; 60], 32, 2).is_none());
        assert!(GroupDescs::from_bytes(vec![0; 64], 16, 4).is_none());
    }
}
