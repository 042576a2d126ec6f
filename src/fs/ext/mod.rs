//! ext2/ext3/ext4: probing, and growing in place to fill a larger device
//! with the result `resize2fs` gives (same block, group and inode counts;
//! same free counts while the descriptor table grows into reserved GDT
//! blocks), without running any external tool.
//!
//! Growing is split in two: [`plan_grow`] reads only metadata (superblock,
//! descriptors, the block bitmaps of the few old groups that change, the
//! resize inode) and returns a [`GrowPlan`] of plain data; [`apply_grow`]
//! recomputes the same layout, refuses if the device no longer matches the
//! plan, and writes. Nothing is written for a filesystem that needs
//! `e2fsck -f` first or that uses a feature this code does not grow.
//!
//! New groups' bitmaps and inode tables are placed as e2fsprogs'
//! `ext2fs_allocate_group_table` places them (flex_bg packing included).
//! With group checksums (uninit_bg or metadata_csum) new groups get
//! `INODE_UNINIT` and, unless they hold tables or are last, `BLOCK_UNINIT`:
//! their bitmaps and inode tables are not written (the kernel zeroes inode
//! tables lazily, as after `resize2fs` with lazy_itable_init). Without group
//! checksums every new bitmap is written and every new inode table zeroed.
//!
//! Refused before anything is written: a filesystem needing `e2fsck -f`
//! (error state, not cleanly unmounted, last check older than last mount,
//! orphans, journal needing recovery), features whose layout this code does
//! not grow (bigalloc, sparse_super2, mmp, journal_dev, snapshots, unknown
//! bits...), a smaller device (shrinking), and sizes resize2fs refuses too
//! (over 2^32-1 blocks without 64bit, more than 2^32-1 inodes, a descriptor
//! table larger than a group). Like resize2fs, the size used is the
//! device's rounded down to whole 4 KiB pages, minus a last group too
//! small for its tables plus 50 blocks; unlike it, rounding never shrinks.
//!
//! Flags may differ from resize2fs' where counts cannot: old groups keep
//! their `BLOCK_UNINIT` flags unless their bitmap changes, and new groups
//! never get `ITABLE_ZEROED` (their tables are not zeroed when group
//! checksums allow lazy initialisation).
//!
//! When the descriptor table must grow past its reserved GDT blocks (or
//! there are none), this code does what the Linux kernel's online resize
//! does rather than what resize2fs does: it does not move inode tables or
//! data out of the way, but turns the filesystem into `meta_bg`, with the
//! existing and reserved descriptor blocks kept as the classic table
//! (`s_first_meta_bg` = their number), the resize inode emptied and its
//! double-indirect block freed, `resize_inode` cleared, and every later
//! meta group holding its own descriptor block in its first, second and
//! last group. Block, group and inode counts equal resize2fs'; the free
//! block count differs by the different backup layout (resize2fs keeps a
//! full descriptor table copy in every backup group instead).

mod apply;
pub mod bitmap;
pub mod csum;
pub mod desc;
mod error;
pub mod geometry;
mod layout;
mod place;
mod read;
mod resize_inode;
pub mod superblock;
mod validate;

pub use error::{FsError, Problem};
pub use layout::{geometry_of, Strategy};

use crate::disk::device::Device;
use layout::Layout;
use read::{layout_for as read_layout, read_superblock};
use superblock::*;

/// What a probe tells about an ext filesystem.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ExtInfo {
    /// "ext2", "ext3" or "ext4", by the features set.
    pub kind: &'static str,
    pub block_size: u32,
    pub blocks_count: u64,
    pub blocks_per_group: u32,
    pub groups: u64,
    pub inodes_count: u32,
    pub inodes_per_group: u32,
    pub free_blocks: u64,
    pub free_inodes: u32,
    /// Blocks reserved for root (`s_r_blocks_count`).
    pub reserved_blocks: u64,
    pub desc_blocks: u64,
    pub reserved_gdt_blocks: u16,
    /// `s_first_meta_bg` when meta_bg is on.
    pub first_meta_bg: Option<u32>,
    /// Size of the filesystem in bytes (blocks × block size).
    pub size_bytes: u64,
    pub features: Vec<String>,
}

fn kind_of(sb: &Superblock) -> &'static str {
    let ext4_incompat = INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG | INCOMPAT_INLINE_DATA;
    let ext4_ro = RO_COMPAT_HUGE_FILE
        | RO_COMPAT_GDT_CSUM
        | RO_COMPAT_DIR_NLINK
        | RO_COMPAT_EXTRA_ISIZE
        | RO_COMPAT_METADATA_CSUM;
    if sb.feature_incompat & ext4_incompat != 0 || sb.feature_ro_compat & ext4_ro != 0 {
        "ext4"
    } else if sb.has_compat(COMPAT_HAS_JOURNAL) {
        "ext3"
    } else {
        "ext2"
    }
}

fn info_of(sb: &Superblock) -> ExtInfo {
    let geo = layout::geometry_of(sb, sb.blocks_count);
    ExtInfo {
        kind: kind_of(sb),
        block_size: sb.block_size(),
        blocks_count: sb.blocks_count,
        blocks_per_group: sb.blocks_per_group,
        groups: geo.groups,
        inodes_count: sb.inodes_count,
        inodes_per_group: sb.inodes_per_group,
        free_blocks: sb.free_blocks_count,
        free_inodes: sb.free_inodes_count,
        reserved_blocks: sb.r_blocks_count,
        desc_blocks: geo.desc_blocks(),
        reserved_gdt_blocks: sb.reserved_gdt_blocks,
        first_meta_bg: sb
            .has_incompat(INCOMPAT_META_BG)
            .then_some(sb.first_meta_bg),
        size_bytes: sb.blocks_count.saturating_mul(u64::from(sb.block_size())),
        features: sb.feature_names(),
    }
}

/// Reads the superblock of `dev`: `None` when it is not ext (no magic),
/// an error when it is but its superblock is corrupt.
pub fn probe(dev: &dyn Device) -> Result<Option<ExtInfo>, FsError> {
    Ok(read_superblock(dev)?.map(|sb| info_of(&sb)))
}

/// What growing will do, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrowPlan {
    /// The device size the plan was made for.
    pub new_size_bytes: u64,
    pub before: ExtInfo,
    pub after: ExtInfo,
    pub strategy: Strategy,
    pub new_groups: u64,
    /// Blocks that will be written, as (first block, count), ascending.
    pub changed_blocks: Vec<(u64, u64)>,
}

fn layout_for(dev: &dyn Device, new_size_bytes: u64) -> Result<Layout, FsError> {
    read_layout(dev, new_size_bytes.min(dev.size_bytes()))
}

fn plan_of(layout: &Layout, new_size_bytes: u64) -> GrowPlan {
    GrowPlan {
        new_size_bytes,
        before: info_of(&layout.old_sb),
        after: info_of(&layout.sb),
        strategy: layout.strategy,
        new_groups: layout.geo.groups - layout.old_geo.groups,
        changed_blocks: apply::changed_ranges(layout),
    }
}

/// Plans growing the filesystem on `dev` to fill `new_size_bytes` (at most
/// the device's size), the way resize2fs sizes it: whole 4 KiB pages, and
/// no last group too small for its own tables plus 50 blocks.
pub fn plan_grow(dev: &dyn Device, new_size_bytes: u64) -> Result<GrowPlan, FsError> {
    if new_size_bytes > dev.size_bytes() {
        return Err(FsError::unsupported(format!(
            "a size of {new_size_bytes} bytes on a device of {} bytes",
            dev.size_bytes()
        )));
    }
    let layout = layout_for(dev, new_size_bytes)?;
    Ok(plan_of(&layout, new_size_bytes))
}

/// Carries out `plan` on `dev`, after checking that the device still gives
/// the same plan.
pub fn apply_grow(dev: &mut dyn Device, plan: &GrowPlan) -> Result<(), FsError> {
    let layout = layout_for(dev, plan.new_size_bytes)?;
    let fresh = plan_of(&layout, plan.new_size_bytes);
    if &fresh != plan {
        return Err(FsError::StalePlan {
            what: format!(
                "planned {} -> {} blocks, the device now gives {} -> {}",
                plan.before.blocks_count,
                plan.after.blocks_count,
                fresh.before.blocks_count,
                fresh.after.blocks_count
            ),
        });
    }
    apply::apply(dev, &layout)
}
