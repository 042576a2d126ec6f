//! Reading what growing needs from a device (superblock, descriptors, the
//! block bitmaps of the groups it touches, the resize inode) and computing
//! the grown filesystem as data. Nothing here writes.
//!
//! New groups' tables are placed by emulating e2fsprogs'
//! `ext2fs_allocate_group_table` (the flex_bg packing resize2fs uses), over
//! a lazily built view of which blocks are in use: old groups' bitmaps are
//! read only when a search reaches them, and new groups are described by
//! their backup prefix plus the extents allocated so far.

use std::collections::{BTreeMap, BTreeSet};

use super::bitmap::{bit, count_set, set_range};
use super::csum::crc32c_raw;
use super::desc::{GroupDescs, BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use super::error::FsError;
use super::geometry::Geometry;
use super::superblock::*;
use crate::disk::device::Device;

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
/// resize2fs rounds a device-derived size down to whole pages of this size.
pub const SYS_PAGE_SIZE: u64 = 4096;
/// A last group must have this many blocks beyond its overhead to be kept.
const LAST_GROUP_MIN_DATA_BLOCKS: u64 = 50;
const SECTOR: u64 = 512;

pub(crate) fn read(
    dev: &dyn Device,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, FsError> {
    let mut buf = vec![0u8; len];
    dev.read_at(offset, &mut buf)
        .map_err(|source| FsError::Io {
            operation: what,
            offset,
            source,
        })?;
    Ok(buf)
}

fn le32_at(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

fn to_usize(v: u64, what: &'static str) -> Result<usize, FsError> {
    usize::try_from(v)
        .map_err(|_| FsError::unsupported(format!("{what} {v} does not fit in memory")))
}

/// The filesystem as read from the device.
#[derive(Debug, Clone)]
pub struct OldFs {
    pub sb: Superblock,
    pub geo: Geometry,
    pub descs: GroupDescs,
}

/// Builds the geometry a superblock describes for `blocks_count` blocks.
pub fn geometry_of(sb: &Superblock, blocks_count: u64) -> Geometry {
    let block_size = u64::from(sb.block_size());
    let inode_bytes = u64::from(sb.inodes_per_group) * u64::from(sb.inode_size);
    Geometry {
        block_size,
        first_data_block: u64::from(sb.first_data_block),
        blocks_per_group: u64::from(sb.blocks_per_group),
        blocks_count,
        groups: sb.group_count_for(blocks_count),
        desc_size: u64::from(sb.desc_size),
        inode_blocks_per_group: inode_bytes.div_ceil(block_size),
        sparse_super: sb.has_ro_compat(RO_COMPAT_SPARSE_SUPER),
        meta_bg: sb.has_incompat(INCOMPAT_META_BG),
        first_meta_bg: u64::from(sb.first_meta_bg),
        reserved_gdt_blocks: u64::from(sb.reserved_gdt_blocks),
        flex_size: if sb.has_incompat(INCOMPAT_FLEX_BG) && sb.log_groups_per_flex > 0 {
            1u64 << sb.log_groups_per_flex.min(31)
        } else {
            0
        },
    }
}

/// Reads the superblock; `None` when the magic is not ext's.
pub fn read_superblock(dev: &dyn Device) -> Result<Option<Superblock>, FsError> {
    if dev.size_bytes() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
        return Ok(None);
    }
    let raw = read(
        dev,
        SUPERBLOCK_OFFSET,
        SUPERBLOCK_SIZE,
        "reading the superblock",
    )?;
    if raw.get(0x38..0x3A) != Some(&EXT_MAGIC.to_le_bytes()[..]) {
        return Ok(None);
    }
    Superblock::parse(&raw, SUPERBLOCK_OFFSET).map(Some)
}

/// Reads superblock and descriptor table of a filesystem to grow: refuses
/// what [`check_growable`] refuses, checks every descriptor checksum and
/// table location.
pub fn read_fs(dev: &dyn Device) -> Result<Option<OldFs>, FsError> {
    let Some(sb) = read_superblock(dev)? else {
        return Ok(None);
    };
    check_growable(&sb)?;
    let geo = geometry_of(&sb, sb.blocks_count);
    if sb.reserved_gdt_blocks > 0 && u64::from(sb.reserved_gdt_blocks) > geo.block_size / 4 {
        return Err(FsError::corrupt(
            "superblock",
            "s_reserved_gdt_blocks",
            SUPERBLOCK_OFFSET + 0xCE,
            sb.reserved_gdt_blocks,
            format!("at most {}", geo.block_size / 4),
        ));
    }
    if geo.meta_bg && geo.first_meta_bg > geo.desc_blocks() {
        return Err(FsError::corrupt(
            "superblock",
            "s_first_meta_bg",
            SUPERBLOCK_OFFSET + 0x104,
            geo.first_meta_bg,
            format!("at most the {} descriptor blocks", geo.desc_blocks()),
        ));
    }
    let dev_blocks = dev.size_bytes() / geo.block_size;
    if dev_blocks < geo.blocks_count {
        return Err(FsError::corrupt(
            "superblock",
            "s_blocks_count",
            SUPERBLOCK_OFFSET + 4,
            geo.blocks_count,
            format!("at most the device's {dev_blocks} blocks"),
        ));
    }
    let bs = to_usize(geo.block_size, "block size")?;
    let groups = to_usize(geo.groups, "group count")?;
    let mut table = Vec::with_capacity(to_usize(geo.desc_blocks(), "descriptor blocks")? * bs);
    for index in 0..geo.desc_blocks() {
        let (_, at) = geo
            .desc_block_locations(index)
            .first()
            .copied()
            .ok_or_else(|| {
                FsError::corrupt(
                    "group descriptor table",
                    "location",
                    0,
                    index,
                    "a stored block",
                )
            })?;
        table.extend(read(
            dev,
            at * geo.block_size,
            bs,
            "reading group descriptors",
        )?);
    }
    let descs = GroupDescs::from_bytes(table, to_usize(geo.desc_size, "descriptor size")?, groups)
        .ok_or_else(|| FsError::corrupt("group descriptor table", "length", 0, 0, groups))?;
    let desc_offset = |g: u64| -> u64 {
        let per = geo.desc_per_block();
        let at = geo.desc_block_locations(g / per).first().map_or(0, |l| l.1);
        at * geo.block_size + (g % per) * geo.desc_size
    };
    for g in 0..geo.groups {
        let gi = to_usize(g, "group")?;
        if let Some(computed) = descs.compute_checksum(&sb, gi) {
            let stored = descs.checksum(gi);
            if stored != computed {
                return Err(FsError::corrupt(
                    "group descriptor",
                    "bg_checksum",
                    desc_offset(g) + 0x1E,
                    format!("{stored:#06x} (group {g})"),
                    format!("{computed:#06x} (computed)"),
                ));
            }
        }
        for (field, off, block, len) in [
            ("bg_block_bitmap", 0x00, descs.block_bitmap(gi), 1),
            ("bg_inode_bitmap", 0x04, descs.inode_bitmap(gi), 1),
            (
                "bg_inode_table",
                0x08,
                descs.inode_table(gi),
                geo.inode_blocks_per_group,
            ),
        ] {
            if block <= geo.first_data_block || block.saturating_add(len) > geo.blocks_count {
                return Err(FsError::corrupt(
                    "group descriptor",
                    field,
                    desc_offset(g) + off,
                    format!("{block} (group {g})"),
                    format!(
                        "a block inside {}..{}",
                        geo.first_data_block + 1,
                        geo.blocks_count
                    ),
                ));
            }
        }
    }
    Ok(Some(OldFs { sb, geo, descs }))
}

/// Refuses filesystems resize2fs would send to e2fsck, and features
/// whose layout this code does not know how to grow.
pub fn check_growable(sb: &Superblock) -> Result<(), FsError> {
    let fsck = |reason: &str| {
        Err(FsError::NeedsFsck {
            reason: reason.to_string(),
        })
    };
    if sb.state & STATE_ERROR_FS != 0 {
        return fsck("the error state is set (s_state has ERROR_FS)");
    }
    if sb.state & STATE_VALID_FS == 0 {
        return fsck("it was not cleanly unmounted (s_state lacks VALID_FS)");
    }
    if sb.lastcheck < sb.mtime {
        return fsck(&format!(
            "last checked (s_lastcheck {}) before it was last mounted (s_mtime {})",
            sb.lastcheck, sb.mtime
        ));
    }
    if sb.last_orphan != 0 {
        return fsck(&format!(
            "orphan inodes are listed (s_last_orphan {})",
            sb.last_orphan
        ));
    }
    if sb.has_ro_compat(RO_COMPAT_ORPHAN_PRESENT) {
        return fsck("the orphan file holds orphan inodes (orphan_present)");
    }
    if sb.has_incompat(INCOMPAT_RECOVER) {
        return fsck("the journal needs recovery (needs_recovery)");
    }
    for (set, word) in [
        (FeatureSet::Compat, sb.feature_compat),
        (FeatureSet::Incompat, sb.feature_incompat),
        (FeatureSet::RoCompat, sb.feature_ro_compat),
    ] {
        for bit in (0..32).map(|n| 1u32 << n).filter(|b| word & b != 0) {
            match FEATURES.iter().find(|f| f.0 == set && f.1 == bit) {
                Some(&(_, _, _, true)) => {}
                Some(&(_, _, name, false)) => {
                    return Err(FsError::unsupported(format!(
                        "growing a filesystem with the {name} feature"
                    )))
                }
                None => {
                    return Err(FsError::unsupported(format!(
                        "unknown {set:?} feature bit {bit:#x}"
                    )))
                }
            }
        }
    }
    if sb.log_cluster_size() != sb.log_block_size || sb.clusters_per_group() != sb.blocks_per_group
    {
        return Err(FsError::unsupported("clusters larger than blocks"));
    }
    if sb.has_compat(COMPAT_RESIZE_INODE) && sb.has_incompat(INCOMPAT_META_BG) {
        return Err(FsError::unsupported("resize_inode together with meta_bg"));
    }
    Ok(())
}

/// resize2fs' choice of size for a device of `dev_blocks` blocks: whole
/// pages, at most 2^32-1 blocks without 64bit, and no last group too small
/// to hold its own tables plus 50 blocks (`adjust_new_size`).
pub fn target_blocks(old: &OldFs, dev_blocks: u64) -> Result<u64, FsError> {
    let sb = &old.sb;
    let geo = &old.geo;
    let mut size = dev_blocks;
    if SYS_PAGE_SIZE > geo.block_size {
        size &= !(SYS_PAGE_SIZE / geo.block_size - 1);
    }
    if !sb.has_incompat(INCOMPAT_64BIT) {
        if size == 1u64 << 32 {
            size -= 1;
        } else if size > 1u64 << 32 {
            return Err(FsError::unsupported(format!(
                "{size} blocks need the 64bit feature (at most 2^32-1 without it)"
            )));
        }
    }
    let ipg = u64::from(sb.inodes_per_group);
    loop {
        let mut shape = geo.clone();
        shape.blocks_count = size;
        shape.groups = sb.group_count_for(size);
        if shape.groups == 0 {
            return Err(FsError::unsupported("a size below one block group"));
        }
        let mut overhead = 2 + geo.inode_blocks_per_group;
        if shape.has_super(shape.groups - 1) {
            overhead += 1 + shape.desc_blocks() + geo.reserved_gdt_blocks;
        }
        let rem = (size - geo.first_data_block) % geo.blocks_per_group;
        if shape.groups > 1 && rem != 0 && rem < overhead + LAST_GROUP_MIN_DATA_BLOCKS {
            size -= rem;
            continue;
        }
        if ipg.saturating_mul(shape.groups) > u64::from(u32::MAX) {
            if ipg.saturating_mul(shape.groups - 1) > u64::from(u32::MAX) {
                return Err(FsError::unsupported(format!(
                    "{} inodes (more than 2^32-1)",
                    ipg.saturating_mul(shape.groups)
                )));
            }
            size = geo.blocks_per_group * (shape.groups - 1) + geo.first_data_block;
            continue;
        }
        if shape.desc_blocks() + geo.first_data_block > geo.blocks_per_group {
            return Err(FsError::unsupported(format!(
                "{} descriptor blocks do not fit in one group",
                shape.desc_blocks()
            )));
        }
        return Ok(size);
    }
}

/// How the descriptor table makes room for the new groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The device holds no more groups than now: nothing to do.
    NoChange,
    /// The new descriptors fit the existing descriptor blocks.
    ExistingDescriptorBlocks,
    /// New descriptor blocks come out of the reserved GDT blocks, as
    /// resize2fs does.
    ReservedGdt,
    /// Already meta_bg: new meta groups carry their own descriptors.
    MetaBg,
    /// The reserved GDT blocks (if any) become ordinary descriptor blocks
    /// and the filesystem switches to meta_bg, as the kernel's online
    /// resize does.
    ConvertToMetaBg,
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
    pub fn read_from(dev: &dyn Device, old: &OldFs) -> Result<ResizeInode, FsError> {
        let isz = u64::from(old.sb.inode_size);
        let offset = old.descs.inode_table(0) * old.geo.block_size + (RESIZE_INO - 1) * isz;
        let raw = read(
            dev,
            offset,
            usize::from(old.sb.inode_size),
            "reading the resize inode",
        )?;
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

/// The grown filesystem, computed but not written.
#[derive(Debug, Clone)]
pub struct Layout {
    pub strategy: Strategy,
    pub old_sb: Superblock,
    pub old_geo: Geometry,
    pub sb: Superblock,
    pub geo: Geometry,
    /// Descriptors of every group; checksums are set when written.
    pub descs: GroupDescs,
    /// Blocks newly given to bitmaps and inode tables: start → length.
    pub allocated: BTreeMap<u64, u64>,
    /// Old groups whose block bitmap changes, with the new bitmap bytes.
    pub old_bitmaps: BTreeMap<u64, Vec<u8>>,
    pub resize_inode: Option<ResizeInode>,
}

/// Old groups' block bitmaps (bpg/8 bytes each), read when first needed,
/// with the blocks the last old group gains marked free.
struct OldBitmaps<'a> {
    dev: &'a dyn Device,
    old: &'a OldFs,
    new_geo: Geometry,
    cache: BTreeMap<u64, Vec<u8>>,
}

/// The state of the table-placement emulation.
struct Placer<'a> {
    old: &'a OldFs,
    geo: Geometry,
    descs: GroupDescs,
    allocated: BTreeMap<u64, u64>,
    bitmaps: OldBitmaps<'a>,
    hosts: BTreeSet<u64>,
}

impl OldBitmaps<'_> {
    /// The block bitmap of old group `g`: read (checksum verified), or
    /// derived for a BLOCK_UNINIT group; blocks past the old end that now
    /// exist are free.
    fn get(&mut self, g: u64) -> Result<&mut Vec<u8>, FsError> {
        if !self.cache.contains_key(&g) {
            let old = self.old;
            let geo = &old.geo;
            let gi = to_usize(g, "group")?;
            let nbytes = to_usize(geo.blocks_per_group / 8, "bitmap")?;
            let flags = old.descs.flags(gi);
            let mut bitmap = if old.sb.group_desc_csum() && flags & BG_BLOCK_UNINIT != 0 {
                let mut bm = vec![0u8; nbytes];
                let first = geo.group_first(g);
                set_range(&mut bm, 0, geo.backup_len(g), true);
                for other in 0..geo.groups {
                    let oi = to_usize(other, "group")?;
                    let itable = old.descs.inode_table(oi);
                    let tables = [
                        (old.descs.block_bitmap(oi), 1),
                        (old.descs.inode_bitmap(oi), 1),
                        (itable, geo.inode_blocks_per_group),
                    ];
                    for (start, len) in tables {
                        let lo = start.max(first);
                        let hi = (start + len).min(first + geo.blocks_per_group);
                        if lo < hi {
                            set_range(&mut bm, lo - first, hi - lo, true);
                        }
                    }
                }
                let blocks = geo.group_blocks(g);
                set_range(&mut bm, blocks, geo.blocks_per_group - blocks, true);
                bm
            } else {
                let at = old.descs.block_bitmap(gi) * geo.block_size;
                let bm = read(self.dev, at, nbytes, "reading a block bitmap")?;
                if old.sb.metadata_csum() {
                    let (stored, mask) = old.descs.block_bitmap_csum(gi);
                    let computed = crc32c_raw(old.sb.csum_seed(), &bm) & mask;
                    if stored != computed {
                        return Err(FsError::corrupt(
                            "block bitmap",
                            "bg_block_bitmap_csum",
                            at,
                            format!("{stored:#x} (group {g})"),
                            format!("{computed:#x} (computed)"),
                        ));
                    }
                }
                bm
            };
            if g == geo.groups - 1 {
                let (was, now) = (geo.group_blocks(g), self.new_geo.group_blocks(g));
                set_range(&mut bitmap, was, now.saturating_sub(was), false);
            }
            self.cache.insert(g, bitmap);
        }
        self.cache
            .get_mut(&g)
            .ok_or_else(|| FsError::unsupported("bitmap cache"))
    }
}

impl Placer<'_> {
    /// The first block in use in `lo..hi`, if any.
    fn first_used(&mut self, lo: u64, hi: u64) -> Result<Option<u64>, FsError> {
        if let Some((&s, &l)) = self.allocated.range(..=lo).next_back() {
            if s + l > lo {
                return Ok(Some(lo));
            }
        }
        let next_alloc = self.allocated.range(lo + 1..hi).next().map(|(&s, _)| s);
        let limit = next_alloc.unwrap_or(hi);
        let mut b = lo;
        while b < limit {
            if b >= self.geo.blocks_count {
                return Ok(Some(b));
            }
            let g = self.geo.group_of(b);
            let first = self.geo.group_first(g);
            let seg_end = limit.min(first + self.geo.blocks_per_group);
            if g < self.old.geo.groups {
                let bm = self.bitmaps.get(g)?;
                if let Some(x) = (b..seg_end).find(|&x| bit(bm, x - first)) {
                    return Ok(Some(x));
                }
            } else if b < first + self.geo.backup_len(g) {
                return Ok(Some(b));
            }
            b = seg_end;
        }
        Ok(next_alloc)
    }

    /// `ext2fs_get_free_blocks2`: the first `b` from `start` (wrapping
    /// when `finish <= start`) with `num` free blocks at `b`.
    fn get_free(&mut self, start: u64, finish: u64, num: u64) -> Result<Option<u64>, FsError> {
        let fdb = self.geo.first_data_block;
        let num = num.max(1);
        let finish = if finish == 0 { start } else { finish };
        let mut b = if start == 0 { fdb } else { start };
        let mut wrapped = false;
        loop {
            if b + num > self.geo.blocks_count {
                if finish > start || wrapped {
                    return Ok(None);
                }
                b = fdb;
                wrapped = true;
            }
            match self.first_used(b, b + num)? {
                None => return Ok(Some(b)),
                Some(used) => {
                    if b < finish && finish <= used {
                        return Ok(None);
                    }
                    b = used + 1;
                }
            }
            if b == finish {
                return Ok(None);
            }
        }
    }

    /// `flexbg_offset`: where a flex group's run of tables continues.
    fn flexbg_offset(
        &mut self,
        group: u64,
        start_blk: u64,
        rem: u64,
        elem: u64,
    ) -> Result<u64, FsError> {
        let flex = self.geo.flex_size;
        let size = (rem * elem).min(self.geo.blocks_per_group / 4);
        if start_blk != 0 && start_blk < self.geo.blocks_count {
            if let Some(b) = self.get_free(start_blk, start_blk + size, elem)? {
                return Ok(b);
            }
        }
        let start = self.geo.group_first(flex * (group / flex));
        let last_grp = (group | (flex - 1)).min(self.geo.groups - 1);
        let last_blk = self.geo.group_last(last_grp);
        for (from, want) in [(start, size), (start, elem), (0, elem)] {
            if let Some(b) = self.get_free(from, last_blk, want)? {
                return Ok(b);
            }
        }
        Ok(0)
    }

    fn take(&mut self, start: u64, len: u64, flex: bool) {
        self.allocated.insert(start, len);
        if flex {
            for g in self.geo.group_of(start)..=self.geo.group_of(start + len - 1) {
                self.hosts.insert(g);
            }
        }
    }

    fn no_room(&self, group: u64, what: &str) -> FsError {
        FsError::unsupported(format!("no room for the {what} of new group {group}"))
    }

    /// One bitmap block: the first free from `start`, else from the
    /// group's own start.
    fn place_bitmap(
        &mut self,
        group: u64,
        start: u64,
        group_blk: u64,
        last_blk: u64,
        what: &str,
    ) -> Result<u64, FsError> {
        match self.get_free(start, last_blk, 1)? {
            Some(b) => Ok(b),
            None => self
                .get_free(group_blk, last_blk, 1)?
                .ok_or_else(|| self.no_room(group, what)),
        }
    }

    /// `ext2fs_allocate_group_table` for new group `group`.
    fn allocate_group_table(&mut self, group: u64) -> Result<(), FsError> {
        let gi = to_usize(group, "group")?;
        let flex = self.geo.flex_size;
        let itb = self.geo.inode_blocks_per_group;
        let group_blk = self.geo.group_first(group);
        let mut last_blk = self.geo.group_last(group);
        let mut start_blk = group_blk;
        let (mut rem, mut last_grp, mut table_offset) = (0, 0, 0);
        if flex > 0 {
            last_grp = (group | (flex - 1)).min(self.geo.groups - 1);
            rem = last_grp - group + 1;
            table_offset = flex;
            let mut prev = 0;
            if group % flex != 0 {
                prev = self.descs.block_bitmap(gi - 1) + 1;
            } else if last_grp == self.geo.groups - 1 {
                table_offset = last_grp & (flex - 1);
                table_offset = if table_offset == 0 {
                    flex
                } else {
                    table_offset + 1
                };
            }
            start_blk = self.flexbg_offset(group, prev, rem, 1)?;
            last_blk = self.geo.group_last(last_grp);
        }
        let bb = self.place_bitmap(group, start_blk, group_blk, last_blk, "block bitmap")?;
        self.take(bb, 1, flex > 0);
        self.descs.set_block_bitmap(gi, bb);

        if flex > 0 {
            let prev = if group % flex != 0 {
                self.descs.inode_bitmap(gi - 1) + 1
            } else {
                bb + table_offset
            };
            start_blk = self.flexbg_offset(group, prev, rem, 1)?;
            last_blk = self.geo.group_last(last_grp);
        }
        let ib = self.place_bitmap(group, start_blk, group_blk, last_blk, "inode bitmap")?;
        self.take(ib, 1, flex > 0);
        self.descs.set_inode_bitmap(gi, ib);

        let mut table_start = group_blk;
        if flex > 0 {
            let prev = if group % flex != 0 {
                self.descs.inode_table(gi - 1) + itb
            } else {
                ib + table_offset
            };
            table_start = self.flexbg_offset(group, prev, rem, itb)?;
            last_blk = self.geo.group_last(last_grp);
        }
        let it = self
            .get_free(table_start, last_blk, itb)?
            .ok_or_else(|| self.no_room(group, "inode table"))?;
        self.take(it, itb, flex > 0);
        self.descs.set_inode_table(gi, it);
        Ok(())
    }
}

/// Blocks of `allocated` inside `lo..hi`.
pub fn allocated_in(allocated: &BTreeMap<u64, u64>, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let before = allocated.range(..lo).next_back().map(|(&s, &l)| (s, l));
    for (s, l) in before
        .into_iter()
        .chain(allocated.range(lo..hi).map(|(&s, &l)| (s, l)))
    {
        let a = s.max(lo);
        let b = (s + l).min(hi);
        if a < b {
            out.push((a, b - a));
        }
    }
    out
}

/// More blocks in use than a group has: placement went wrong. Never
/// expected, but refused rather than written.
fn overlap(group: u64) -> FsError {
    FsError::unsupported(format!(
        "a layout with more blocks in use than group {group} holds (a bug; nothing was written)"
    ))
}

/// Computes the grown filesystem for a device of `dev_blocks` blocks.
pub fn compute(dev: &dyn Device, old: &OldFs, dev_blocks: u64) -> Result<Layout, FsError> {
    let new_blocks = target_blocks(old, dev_blocks)?;
    let old_geo = &old.geo;
    let mut sb = old.sb.clone();
    let unchanged = Layout {
        strategy: Strategy::NoChange,
        old_sb: old.sb.clone(),
        old_geo: old_geo.clone(),
        sb: old.sb.clone(),
        geo: old_geo.clone(),
        descs: old.descs.clone(),
        allocated: BTreeMap::new(),
        old_bitmaps: BTreeMap::new(),
        resize_inode: None,
    };
    if dev_blocks < old_geo.blocks_count {
        return Err(FsError::unsupported(format!(
            "shrinking from {} to {dev_blocks} blocks",
            old_geo.blocks_count
        )));
    }
    // resize2fs would shrink by the few blocks its rounding takes off a
    // device no smaller than the filesystem; growing never shrinks.
    if new_blocks <= old_geo.blocks_count {
        return Ok(unchanged);
    }
    let mut geo = old_geo.clone();
    geo.blocks_count = new_blocks;
    geo.groups = sb.group_count_for(new_blocks);
    let (d_old, d_new) = (old_geo.desc_blocks(), geo.desc_blocks());
    let resize_ino = sb.has_compat(COMPAT_RESIZE_INODE);
    let strategy = if geo.meta_bg {
        Strategy::MetaBg
    } else if d_new <= d_old {
        Strategy::ExistingDescriptorBlocks
    } else if resize_ino && d_new <= d_old + old_geo.reserved_gdt_blocks {
        Strategy::ReservedGdt
    } else {
        Strategy::ConvertToMetaBg
    };
    match strategy {
        Strategy::ReservedGdt => {
            geo.reserved_gdt_blocks = old_geo.reserved_gdt_blocks - (d_new - d_old);
        }
        Strategy::ConvertToMetaBg => {
            geo.meta_bg = true;
            geo.first_meta_bg = d_old + old_geo.reserved_gdt_blocks;
            geo.reserved_gdt_blocks = 0;
            sb.feature_incompat |= INCOMPAT_META_BG;
            sb.feature_compat &= !COMPAT_RESIZE_INODE;
            sb.first_meta_bg = u32::try_from(geo.first_meta_bg)
                .map_err(|_| FsError::unsupported("first_meta_bg beyond 2^32"))?;
        }
        _ => {}
    }
    sb.reserved_gdt_blocks = u16::try_from(geo.reserved_gdt_blocks)
        .map_err(|_| FsError::unsupported("reserved GDT blocks beyond 2^16"))?;
    if sb.has_compat(COMPAT_RESIZE_INODE) {
        check_resize_inode_fits(&geo)?;
    }
    let resize_inode = if resize_ino {
        Some(ResizeInode::read_from(dev, old)?)
    } else {
        None
    };

    let mut descs = old.descs.clone();
    descs.grow_to(to_usize(geo.groups, "group count")?);
    let mut placer = Placer {
        old,
        geo: geo.clone(),
        descs,
        allocated: BTreeMap::new(),
        bitmaps: OldBitmaps {
            dev,
            old,
            new_geo: geo.clone(),
            cache: BTreeMap::new(),
        },
        hosts: BTreeSet::new(),
    };
    for g in old_geo.groups..geo.groups {
        placer.allocate_group_table(g)?;
    }
    let Placer {
        mut descs,
        allocated,
        mut bitmaps,
        hosts,
        ..
    } = placer;

    // Old groups that change: the last (its tail now exists), hosts of
    // new tables, and the group of a freed resize-inode block.
    let last_old = old_geo.groups - 1;
    let mut touched: BTreeSet<u64> = hosts
        .iter()
        .copied()
        .filter(|&g| g < old_geo.groups)
        .collect();
    if old_geo.group_blocks(last_old) != geo.group_blocks(last_old) {
        touched.insert(last_old);
    }
    let mut freed_dind = None;
    if strategy == Strategy::ConvertToMetaBg {
        if let Some(ri) = &resize_inode {
            touched.insert(old_geo.group_of(ri.dind));
            freed_dind = Some(ri.dind);
        }
    }
    let mut old_bitmaps = BTreeMap::new();
    for &g in &touched {
        let first = geo.group_first(g);
        let mut bm = bitmaps.get(g)?.clone();
        for (s, l) in allocated_in(&allocated, first, first + geo.blocks_per_group) {
            set_range(&mut bm, s - first, l, true);
        }
        if let Some(d) = freed_dind.filter(|&d| geo.group_of(d) == g) {
            set_range(&mut bm, d - first, 1, false);
        }
        let used = count_set(&bm, geo.group_blocks(g));
        let gi = to_usize(g, "group")?;
        let free = geo
            .group_blocks(g)
            .checked_sub(used)
            .ok_or_else(|| overlap(g))?;
        descs.set_free_blocks(gi, u32::try_from(free).unwrap_or(u32::MAX));
        descs.set_flags(gi, descs.flags(gi) & !BG_BLOCK_UNINIT);
        old_bitmaps.insert(g, bm);
    }

    let csum = sb.group_desc_csum();
    let ipg = sb.inodes_per_group;
    for g in old_geo.groups..geo.groups {
        let gi = to_usize(g, "group")?;
        let first = geo.group_first(g);
        let taken: u64 = allocated_in(&allocated, first, first + geo.group_blocks(g))
            .iter()
            .map(|&(_, l)| l)
            .sum();
        let free = geo
            .group_blocks(g)
            .checked_sub(geo.backup_len(g) + taken)
            .ok_or_else(|| overlap(g))?;
        descs.set_free_blocks(gi, u32::try_from(free).unwrap_or(u32::MAX));
        descs.set_free_inodes(gi, ipg);
        descs.set_used_dirs(gi, 0);
        let mut flags = 0;
        if csum {
            flags |= BG_INODE_UNINIT;
            descs.set_itable_unused(gi, ipg);
            if g != geo.groups - 1 && !hosts.contains(&g) {
                flags |= BG_BLOCK_UNINIT;
            }
        }
        descs.set_flags(gi, flags);
    }
    let mut free_blocks = 0u64;
    let mut free_inodes = 0u64;
    for g in 0..to_usize(geo.groups, "group count")? {
        free_blocks += u64::from(descs.free_blocks(g));
        free_inodes += u64::from(descs.free_inodes(g));
    }
    sb.blocks_count = new_blocks;
    sb.free_blocks_count = free_blocks;
    sb.free_inodes_count = u32::try_from(free_inodes)
        .map_err(|_| FsError::unsupported("more than 2^32-1 free inodes"))?;
    sb.inodes_count = u32::try_from(geo.groups * u64::from(ipg))
        .map_err(|_| FsError::unsupported("more than 2^32-1 inodes"))?;
    sb.r_blocks_count = scaled_reserved(old.sb.r_blocks_count, old_geo.blocks_count, new_blocks);
    sb.overhead_clusters = 0;

    Ok(Layout {
        strategy,
        old_sb: old.sb.clone(),
        old_geo: old_geo.clone(),
        sb,
        geo,
        descs,
        allocated,
        old_bitmaps,
        resize_inode,
    })
}

/// The rebuilt resize inode must list every backup of a reserved GDT
/// block in one indirect block, with 32-bit block numbers; refused here
/// so that nothing is half written.
fn check_resize_inode_fits(geo: &Geometry) -> Result<(), FsError> {
    let per_block = geo.block_size / 4;
    let backups: Vec<u64> = geo.backup_groups().collect();
    if backups.len() as u64 > per_block {
        return Err(FsError::unsupported(format!(
            "a resize inode listing {} backup groups (one block holds {per_block})",
            backups.len()
        )));
    }
    let last_reserved = geo.first_data_block + geo.desc_blocks() + geo.reserved_gdt_blocks;
    let highest = backups
        .last()
        .map_or(last_reserved, |&g| last_reserved + g * geo.blocks_per_group);
    if highest > u64::from(u32::MAX) {
        return Err(FsError::unsupported(format!(
            "a resize inode pointing at block {highest} (beyond 2^32)"
        )));
    }
    Ok(())
}

/// The reserved block count scaled as resize2fs does it, in doubles:
/// `percent = r * 100.0 / old`, then `percent * new / 100.0` truncated.
pub fn scaled_reserved(r_old: u64, old_blocks: u64, new_blocks: u64) -> u64 {
    // Block counts are below 2^53 for any real filesystem; the double
    // arithmetic is the point (it reproduces resize2fs bit for bit).
    let percent = (r_old as f64 * 100.0) / old_blocks as f64;
    let scaled = percent * new_blocks as f64 / 100.0;
    if scaled.is_finite() && scaled >= 0.0 {
        scaled as u64
    } else {
        0
    }
}

/// The resize inode's `i_blocks` (512-byte units) once rebuilt as
/// `ext2fs_create_resize_inode` builds it: its double-indirect block, each
/// reserved GDT block, and each block's backups.
pub fn resize_inode_sectors(geo: &Geometry) -> u64 {
    let backups = geo.backup_groups().count() as u64;
    (1 + geo.reserved_gdt_blocks * (1 + backups)) * (geo.block_size / SECTOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::superblock::tests::golden;

    /// One change to a valid superblock.
    type Mutation = fn(&mut Superblock);

    fn refusal(change: Mutation) -> FsError {
        let mut sb = Superblock::parse(&golden(), SUPERBLOCK_OFFSET).unwrap();
        check_growable(&sb).unwrap();
        change(&mut sb);
        check_growable(&sb).unwrap_err()
    }

    #[test]
    fn filesystems_needing_fsck_are_refused_with_the_reason() {
        let cases: [(Mutation, &str); 6] = [
            (|sb| sb.state |= STATE_ERROR_FS, "ERROR_FS"),
            (|sb| sb.state = 0, "not cleanly unmounted"),
            (|sb| sb.mtime = sb.lastcheck + 1, "s_lastcheck"),
            (|sb| sb.last_orphan = 12, "s_last_orphan 12"),
            (
                |sb| sb.feature_incompat |= INCOMPAT_RECOVER,
                "needs_recovery",
            ),
            (
                |sb| sb.feature_ro_compat |= RO_COMPAT_ORPHAN_PRESENT,
                "orphan_present",
            ),
        ];
        for (change, words) in cases {
            match refusal(change) {
                FsError::NeedsFsck { reason } => assert!(reason.contains(words), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn unhandled_features_are_refused_by_name() {
        let cases: [(Mutation, &str); 4] = [
            (|sb| sb.feature_ro_compat |= RO_COMPAT_BIGALLOC, "bigalloc"),
            (
                |sb| sb.feature_compat |= COMPAT_SPARSE_SUPER2,
                "sparse_super2",
            ),
            (|sb| sb.feature_incompat |= INCOMPAT_MMP, "mmp"),
            (|sb| sb.feature_incompat |= 0x4000_0000, "0x40000000"),
        ];
        for (change, words) in cases {
            match refusal(change) {
                FsError::Unsupported { what } => assert!(what.contains(words), "{what}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn reserved_blocks_scale_like_resize2fs() {
        // 5% of 262144 blocks grown ten times.
        assert_eq!(scaled_reserved(13107, 262144, 2621440), 131070);
        assert_eq!(scaled_reserved(0, 1000, 5000), 0);
    }

    #[test]
    fn allocated_extents_clip_to_a_range() {
        let mut m = BTreeMap::new();
        m.insert(10, 5);
        m.insert(20, 10);
        assert_eq!(allocated_in(&m, 12, 25), vec![(12, 3), (20, 5)]);
        assert_eq!(allocated_in(&m, 15, 20), vec![]);
    }
}
