//! Computing the grown filesystem as data, from regions read beforehand
//! (superblock, descriptors, the resize inode record and the block bitmaps
//! of the old groups placement reaches). No I/O: a bitmap that was not read
//! is asked for with [`ComputeError::Need`], and the caller reads it and
//! computes again (see `super::read::layout_for`).

use std::collections::{BTreeMap, BTreeSet};

use super::bitmap::{count_set, set_range};
use super::desc::{GroupDescs, BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use super::error::FsError;
use super::geometry::Geometry;
use super::place::{allocated_in, overlap, OldBitmaps, Placer};
use super::resize_inode::ResizeInode;
use super::superblock::*;

/// resize2fs rounds a device-derived size down to whole pages of this size.
pub const SYS_PAGE_SIZE: u64 = 4096;
/// A last group must have this many blocks beyond its overhead to be kept.
const LAST_GROUP_MIN_DATA_BLOCKS: u64 = 50;
/// The unit of an inode's `i_blocks`: 512 bytes whatever the block or the
/// disk's sector size (no `huge_file` scaling on the resize inode).
const I_BLOCKS_UNIT: u64 = 512;

pub(super) fn to_usize(v: u64, what: &'static str) -> Result<usize, FsError> {
    usize::try_from(v)
        .map_err(|_| FsError::unsupported(format!("{what} {v} does not fit in memory")))
}

/// What computing reads besides superblock and descriptors: the resize
/// inode's record (when the feature is on) and old groups' block bitmaps
/// (group → its `blocks_per_group / 8` bytes).
#[derive(Debug, Clone, Default)]
pub struct Regions {
    pub resize_inode: Option<Vec<u8>>,
    pub bitmaps: BTreeMap<u64, Vec<u8>>,
}

/// Why [`compute`] stopped: a real error, or a region it needs read first.
#[derive(Debug)]
pub enum ComputeError {
    Fs(FsError),
    /// The block bitmap of this old group.
    Need(u64),
}

impl From<FsError> for ComputeError {
    fn from(e: FsError) -> ComputeError {
        ComputeError::Fs(e)
    }
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

/// The layout of a filesystem that does not grow.
fn unchanged(old: &OldFs) -> Layout {
    Layout {
        strategy: Strategy::NoChange,
        old_sb: old.sb.clone(),
        old_geo: old.geo.clone(),
        sb: old.sb.clone(),
        geo: old.geo.clone(),
        descs: old.descs.clone(),
        allocated: BTreeMap::new(),
        old_bitmaps: BTreeMap::new(),
        resize_inode: None,
    }
}

/// How the descriptor table makes room for `new_blocks`, and the
/// superblock and geometry that follow (counts not yet updated).
///
/// Reserved GDT blocks left behind when `resize_inode` was cleared (by
/// tune2fs or debugfs; e2fsck asks to zero `s_reserved_gdt_blocks` then)
/// are still reserved in every backup group, so they are descriptor room
/// here too; what the descriptors do not take is freed and
/// `s_reserved_gdt_blocks` set to 0, as `e2fsck -fy` would leave it (see
/// [`stale_reserved_ranges`]). resize2fs keeps them and moves inode tables
/// instead, and leaves the stale resize inode pointing at overwritten
/// blocks (e2fsck then finds illegal blocks in inode 7).
fn plan_descriptors(
    old: &OldFs,
    new_blocks: u64,
) -> Result<(Strategy, Superblock, Geometry), FsError> {
    let old_geo = &old.geo;
    let mut sb = old.sb.clone();
    let mut geo = old_geo.clone();
    geo.blocks_count = new_blocks;
    geo.groups = sb.group_count_for(new_blocks);
    let (d_old, d_new) = (old_geo.desc_blocks(), geo.desc_blocks());
    let stale = stale_reserved_gdt(old);
    let strategy = if geo.meta_bg {
        Strategy::MetaBg
    } else if d_new <= d_old {
        Strategy::ExistingDescriptorBlocks
    } else if d_new <= d_old + old_geo.reserved_gdt_blocks {
        Strategy::ReservedGdt
    } else {
        Strategy::ConvertToMetaBg
    };
    match strategy {
        Strategy::ReservedGdt => {
            geo.reserved_gdt_blocks = old_geo.reserved_gdt_blocks - (d_new - d_old);
        }
        Strategy::ConvertToMetaBg => {
            // Every block of the old table plus its reserved blocks stays a
            // classic descriptor block; d_new > that count, so
            // s_first_meta_bg <= the new descriptor block count.
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
    if stale {
        geo.reserved_gdt_blocks = 0;
    }
    sb.reserved_gdt_blocks = u16::try_from(geo.reserved_gdt_blocks)
        .map_err(|_| FsError::unsupported("reserved GDT blocks beyond 2^16"))?;
    if sb.has_compat(COMPAT_RESIZE_INODE) {
        check_resize_inode_fits(&geo)?;
    }
    Ok((strategy, sb, geo))
}

/// `s_reserved_gdt_blocks` set without `resize_inode` (and without
/// meta_bg, where there are none).
fn stale_reserved_gdt(old: &OldFs) -> bool {
    !old.sb.has_compat(COMPAT_RESIZE_INODE) && !old.geo.meta_bg && old.geo.reserved_gdt_blocks > 0
}

/// The stale reserved GDT blocks no descriptor takes, per old backup
/// group, as (first block, count): freed when they stop being reserved.
fn stale_reserved_ranges(old: &OldFs, geo: &Geometry) -> Vec<(u64, u64)> {
    if !stale_reserved_gdt(old) {
        return Vec::new();
    }
    let old_geo = &old.geo;
    let kept = if geo.meta_bg {
        geo.first_meta_bg
    } else {
        geo.desc_blocks()
    };
    let end = old_geo.desc_blocks() + old_geo.reserved_gdt_blocks;
    if kept >= end {
        return Vec::new();
    }
    (0..old_geo.groups)
        .filter(|&g| old_geo.has_super(g))
        .map(|g| (old_geo.group_first(g) + 1 + kept, end - kept))
        .collect()
}

/// What placement produced.
struct Placed {
    descs: GroupDescs,
    allocated: BTreeMap<u64, u64>,
    hosts: BTreeSet<u64>,
}

/// Places every new group's tables.
fn place_tables<'a>(
    old: &'a OldFs,
    regions: &'a Regions,
    geo: &Geometry,
) -> Result<(Placed, OldBitmaps<'a>), ComputeError> {
    let mut descs = old.descs.clone();
    descs.grow_to(to_usize(geo.groups, "group count")?);
    let mut placer = Placer {
        geo: geo.clone(),
        descs,
        allocated: BTreeMap::new(),
        bitmaps: OldBitmaps {
            old,
            regions,
            new_geo: geo.clone(),
            cache: BTreeMap::new(),
        },
        hosts: BTreeSet::new(),
    };
    for g in old.geo.groups..geo.groups {
        placer.allocate_group_table(g)?;
    }
    let Placer {
        descs,
        allocated,
        bitmaps,
        hosts,
        ..
    } = placer;
    Ok((
        Placed {
            descs,
            allocated,
            hosts,
        },
        bitmaps,
    ))
}

/// New block bitmaps and free counts of the old groups that change: the
/// last (its tail now exists), hosts of new tables, and the groups of
/// `freed` ranges (a resize inode's block, stale reserved GDT blocks; each
/// inside one group).
fn update_old_groups(
    geo: &Geometry,
    freed: &[(u64, u64)],
    placed: &mut Placed,
    bitmaps: &mut OldBitmaps<'_>,
) -> Result<BTreeMap<u64, Vec<u8>>, ComputeError> {
    let old_geo = &bitmaps.old.geo;
    let last_old = old_geo.groups - 1;
    let mut touched: BTreeSet<u64> = placed
        .hosts
        .iter()
        .copied()
        .filter(|&g| g < old_geo.groups)
        .collect();
    if old_geo.group_blocks(last_old) != geo.group_blocks(last_old) {
        touched.insert(last_old);
    }
    for &(start, _) in freed {
        touched.insert(old_geo.group_of(start));
    }
    let mut old_bitmaps = BTreeMap::new();
    for &g in &touched {
        let first = geo.group_first(g);
        let mut bm = bitmaps.get(g)?.clone();
        for (s, l) in allocated_in(&placed.allocated, first, first + geo.blocks_per_group) {
            set_range(&mut bm, s - first, l, true);
        }
        for &(start, len) in freed.iter().filter(|&&(d, _)| geo.group_of(d) == g) {
            set_range(&mut bm, start - first, len, false);
        }
        let used = count_set(&bm, geo.group_blocks(g));
        let gi = to_usize(g, "group")?;
        let free = geo
            .group_blocks(g)
            .checked_sub(used)
            .ok_or_else(|| overlap(g))?;
        let descs = &mut placed.descs;
        descs.set_free_blocks(gi, u32::try_from(free).unwrap_or(u32::MAX));
        descs.set_flags(gi, descs.flags(gi) & !BG_BLOCK_UNINIT);
        old_bitmaps.insert(g, bm);
    }
    Ok(old_bitmaps)
}

/// Free counts and flags of the new groups.
fn describe_new_groups(
    sb: &Superblock,
    old_groups: u64,
    geo: &Geometry,
    placed: &mut Placed,
) -> Result<(), FsError> {
    let csum = sb.group_desc_csum();
    let ipg = sb.inodes_per_group;
    for g in old_groups..geo.groups {
        let gi = to_usize(g, "group")?;
        let first = geo.group_first(g);
        let taken: u64 = allocated_in(&placed.allocated, first, first + geo.group_blocks(g))
            .iter()
            .map(|&(_, l)| l)
            .sum();
        let free = geo
            .group_blocks(g)
            .checked_sub(geo.backup_len(g) + taken)
            .ok_or_else(|| overlap(g))?;
        let descs = &mut placed.descs;
        descs.set_free_blocks(gi, u32::try_from(free).unwrap_or(u32::MAX));
        descs.set_free_inodes(gi, ipg);
        descs.set_used_dirs(gi, 0);
        let mut flags = 0;
        if csum {
            flags |= BG_INODE_UNINIT;
            descs.set_itable_unused(gi, ipg);
            if g != geo.groups - 1 && !placed.hosts.contains(&g) {
                flags |= BG_BLOCK_UNINIT;
            }
        }
        descs.set_flags(gi, flags);
    }
    Ok(())
}

/// The superblock's counts from the grown descriptors.
fn update_counts(
    sb: &mut Superblock,
    old: &OldFs,
    geo: &Geometry,
    descs: &GroupDescs,
) -> Result<(), FsError> {
    let mut free_blocks = 0u64;
    let mut free_inodes = 0u64;
    for g in 0..to_usize(geo.groups, "group count")? {
        free_blocks += u64::from(descs.free_blocks(g));
        free_inodes += u64::from(descs.free_inodes(g));
    }
    let ipg = u64::from(sb.inodes_per_group);
    sb.blocks_count = geo.blocks_count;
    sb.free_blocks_count = free_blocks;
    sb.free_inodes_count = u32::try_from(free_inodes)
        .map_err(|_| FsError::unsupported("more than 2^32-1 free inodes"))?;
    sb.inodes_count = u32::try_from(geo.groups * ipg)
        .map_err(|_| FsError::unsupported("more than 2^32-1 inodes"))?;
    sb.r_blocks_count = scaled_reserved(
        old.sb.r_blocks_count,
        old.geo.blocks_count,
        geo.blocks_count,
    );
    sb.overhead_clusters = 0;
    Ok(())
}

/// The resize inode to rewrite: the feature's, or a stale one (feature
/// cleared, block pointers left) that growing clears.
fn resize_inode_of(old: &OldFs, regions: &Regions) -> Result<Option<ResizeInode>, FsError> {
    let Some(raw) = regions.resize_inode.as_deref() else {
        if old.sb.has_compat(COMPAT_RESIZE_INODE) {
            return Err(FsError::unsupported(
                "a resize inode that was not read (a bug)",
            ));
        }
        return Ok(None);
    };
    let offset = ResizeInode::offset_of(old);
    if !old.sb.has_compat(COMPAT_RESIZE_INODE) && ResizeInode::dind_of(raw) == 0 {
        return Ok(None);
    }
    ResizeInode::parse(raw, offset, old).map(Some)
}

/// Computes the grown filesystem for a device of `dev_blocks` blocks from
/// `old` and the `regions` read so far. No I/O.
pub fn compute(old: &OldFs, regions: &Regions, dev_blocks: u64) -> Result<Layout, ComputeError> {
    let new_blocks = target_blocks(old, dev_blocks)?;
    if dev_blocks < old.geo.blocks_count {
        return Err(FsError::unsupported(format!(
            "shrinking from {} to {dev_blocks} blocks",
            old.geo.blocks_count
        ))
        .into());
    }
    // resize2fs would shrink by the few blocks its rounding takes off a
    // device no smaller than the filesystem; growing never shrinks.
    if new_blocks <= old.geo.blocks_count {
        return Ok(unchanged(old));
    }
    let (strategy, mut sb, geo) = plan_descriptors(old, new_blocks)?;
    let resize_inode = resize_inode_of(old, regions)?;
    let (mut placed, mut bitmaps) = place_tables(old, regions, &geo)?;
    // The resize inode is emptied when the feature goes (converting to
    // meta_bg) or was already gone (a stale inode e2fsck would clear).
    let mut freed = stale_reserved_ranges(old, &geo);
    match &resize_inode {
        Some(ri) if !sb.has_compat(COMPAT_RESIZE_INODE) => freed.push((ri.dind, 1)),
        _ => {}
    }
    let old_bitmaps = update_old_groups(&geo, &freed, &mut placed, &mut bitmaps)?;
    describe_new_groups(&sb, old.geo.groups, &geo, &mut placed)?;
    update_counts(&mut sb, old, &geo, &placed.descs)?;
    Ok(Layout {
        strategy,
        old_sb: old.sb.clone(),
        old_geo: old.geo.clone(),
        sb,
        geo,
        descs: placed.descs,
        allocated: placed.allocated,
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
    (1 + geo.reserved_gdt_blocks * (1 + backups)) * (geo.block_size / I_BLOCKS_UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;

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
