//! The resize inode (inode 7): its record as read from group 0's inode
//! table, and the record rewritten with a new block count. Pure.

use super::csum::crc32c_raw;
use super::error::FsError;
use super::layout::OldFs;
use super::superblock::{Superblock, RO_COMPAT_HUGE_FILE};

/// Inode number of the resize inode.
pub const RESIZE_INO: u64 = 7;
/// `i_block[EXT2_DIND_BLOCK]`: the double-indirect pointer.
const I_BLOCK_DIND: usize = 0x28 + 13 * 4;
const I_BLOCK: usize = 0x28;
const I_BLOCK_LEN: usize = 15 * 4;
const I_BLOCKS_LO: usize = 0x1C;
const I_GENERATION: usize = 0x64;
const I_BLOCKS_HI: usize = 0x74;
const I_CHECKSUM_LO: usize = 0x7C;
const I_EXTRA_ISIZE: usize = 0x80;
const I_CHECKSUM_HI: usize = 0x82;
/// `i_extra_isize` at which `i_checksum_hi` exists.
const INODE_CSUM_HI_EXTRA_END: u16 = 4;
const GOOD_OLD_INODE_SIZE: usize = 128;

fn le32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

/// The resize inode as read from group 0's inode table.
#[derive(Debug, Clone)]
pub struct ResizeInode {
    pub offset: u64,
    pub raw: Vec<u8>,
    pub dind: u64,
}

fn inode_checksum(sb: &Superblock, ino: u64, raw: &[u8]) -> (u32, bool) {
    let has_hi = raw.len() > GOOD_OLD_INODE_SIZE
        && u16::from_le_bytes([raw[I_EXTRA_ISIZE], raw[I_EXTRA_ISIZE + 1]])
            >= INODE_CSUM_HI_EXTRA_END;
    let mut copy = raw.to_vec();
    copy[I_CHECKSUM_LO..I_CHECKSUM_LO + 2].fill(0);
    if has_hi {
        copy[I_CHECKSUM_HI..I_CHECKSUM_HI + 2].fill(0);
    }
    let ino32 = u32::try_from(ino).unwrap_or(u32::MAX);
    let mut crc = crc32c_raw(sb.csum_seed(), &ino32.to_le_bytes());
    crc = crc32c_raw(crc, &copy[I_GENERATION..I_GENERATION + 4]);
    crc = crc32c_raw(crc, &copy);
    (crc, has_hi)
}

impl ResizeInode {
    /// `i_block[13]` of a record (0 when too short).
    pub fn dind_of(raw: &[u8]) -> u64 {
        raw.get(I_BLOCK_DIND..I_BLOCK_DIND + 4)
            .map_or(0, |b| u64::from(le32_at(b, 0)))
    }

    /// Where the resize inode's record lies: group 0's inode table, slot 7.
    pub fn offset_of(old: &OldFs) -> u64 {
        let isz = u64::from(old.sb.inode_size);
        old.descs.inode_table(0) * old.geo.block_size + (RESIZE_INO - 1) * isz
    }

    /// Parses the resize inode's record `raw`, read from byte `offset`
    /// (see [`ResizeInode::offset_of`]): checksum and double-indirect
    /// pointer verified.
    pub fn parse(raw: &[u8], offset: u64, old: &OldFs) -> Result<ResizeInode, FsError> {
        let want_len = usize::from(old.sb.inode_size);
        if raw.len() != want_len || want_len < GOOD_OLD_INODE_SIZE {
            return Err(FsError::corrupt(
                "resize inode (7)",
                "length",
                offset,
                raw.len(),
                want_len,
            ));
        }
        let raw = raw.to_vec();
        if old.sb.metadata_csum() {
            let (crc, has_hi) = inode_checksum(&old.sb, RESIZE_INO, &raw);
            let lo = u32::from(u16::from_le_bytes([
                raw[I_CHECKSUM_LO],
                raw[I_CHECKSUM_LO + 1],
            ]));
            let stored = if has_hi {
                lo | u32::from(u16::from_le_bytes([
                    raw[I_CHECKSUM_HI],
                    raw[I_CHECKSUM_HI + 1],
                ])) << 16
            } else {
                lo
            };
            let want = if has_hi { crc } else { crc & 0xFFFF };
            if stored != want {
                return Err(FsError::corrupt(
                    "resize inode (7)",
                    "i_checksum",
                    offset + I_CHECKSUM_LO as u64,
                    format!("{stored:#x}"),
                    format!("{want:#x} (computed)"),
                ));
            }
        }
        let dind = u64::from(le32_at(&raw, I_BLOCK_DIND));
        if dind <= old.geo.first_data_block || dind >= old.geo.blocks_count {
            return Err(FsError::corrupt(
                "resize inode (7)",
                "i_block[13]",
                offset + I_BLOCK_DIND as u64,
                dind,
                format!(
                    "a block inside {}..{}",
                    old.geo.first_data_block + 1,
                    old.geo.blocks_count
                ),
            ));
        }
        Ok(ResizeInode { offset, raw, dind })
    }

    /// The inode with `i_blocks` = `sectors` and, when `clear_dind`,
    /// without its block pointers; checksum resealed.
    pub fn updated(&self, sb: &Superblock, sectors: u64, clear_dind: bool) -> Vec<u8> {
        let mut raw = self.raw.clone();
        raw[I_BLOCKS_LO..I_BLOCKS_LO + 4]
            .copy_from_slice(&((sectors & 0xFFFF_FFFF) as u32).to_le_bytes());
        if sb.has_ro_compat(RO_COMPAT_HUGE_FILE) {
            raw[I_BLOCKS_HI..I_BLOCKS_HI + 2]
                .copy_from_slice(&(((sectors >> 32) & 0xFFFF) as u16).to_le_bytes());
        }
        if clear_dind {
            raw[I_BLOCK..I_BLOCK + I_BLOCK_LEN].fill(0);
        }
        if sb.metadata_csum() {
            let (crc, has_hi) = inode_checksum(sb, RESIZE_INO, &raw);
            raw[I_CHECKSUM_LO..I_CHECKSUM_LO + 2]
                .copy_from_slice(&((crc & 0xFFFF) as u16).to_le_bytes());
            if has_hi {
                raw[I_CHECKSUM_HI..I_CHECKSUM_HI + 2]
                    .copy_from_slice(&((crc >> 16) as u16).to_le_bytes());
            }
        }
        raw
    }
}
