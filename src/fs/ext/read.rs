//! The I/O half of planning a grow: reading the superblock, the
//! descriptor table, the resize inode record and old groups' block bitmaps,
//! each once, then handing the bytes to [`compute`] (pure). When placement
//! reaches a group whose bitmap was not read, that one bitmap is read and
//! the layout computed again.

use super::desc::{check_groups, GroupDescs, BG_BLOCK_UNINIT};
use super::error::FsError;
use super::layout::{compute, geometry_of, to_usize, ComputeError, Layout, OldFs, Regions};
use super::resize_inode::ResizeInode;
use super::superblock::*;
use super::validate::{validate_descriptors, validate_superblock, validate_table_locations};
use crate::disk::device::Device;

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
/// what [`validate_superblock`] refuses, checks every descriptor checksum and
/// table location.
pub fn read_fs(dev: &dyn Device) -> Result<Option<OldFs>, FsError> {
    let Some(sb) = read_superblock(dev)? else {
        return Ok(None);
    };
    validate_superblock(&sb)?;
    let geo = geometry_of(&sb, sb.blocks_count);
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
    check_groups(&sb, &geo, &descs, &desc_offset)?;
    validate_descriptors(&sb, &geo, &descs, &desc_offset)?;
    validate_table_locations(&sb, &geo, &descs, &desc_offset)?;
    Ok(Some(OldFs { sb, geo, descs }))
}

/// Reads the resize inode record and the block bitmaps placement will
/// most likely reach: the old groups of the last flex group (or the last
/// old group alone). BLOCK_UNINIT groups are derived, not read.
pub fn read_regions(dev: &dyn Device, old: &OldFs) -> Result<Regions, FsError> {
    let mut regions = Regions::default();
    // A stale resize inode (feature cleared, reserved GDT blocks left) is
    // read too: growing clears it.
    if old.sb.has_compat(COMPAT_RESIZE_INODE) || old.sb.reserved_gdt_blocks > 0 {
        regions.resize_inode = Some(read(
            dev,
            ResizeInode::offset_of(old),
            usize::from(old.sb.inode_size),
            "reading the resize inode",
        )?);
    }
    let last = old.geo.groups - 1;
    let first = match old.geo.flex_size {
        0 => last,
        flex => last - last % flex.min(PREFETCH_GROUPS),
    };
    for g in first..=last {
        read_bitmap_into(dev, old, g, &mut regions)?;
    }
    Ok(regions)
}

/// At most this many old groups' bitmaps are read ahead.
const PREFETCH_GROUPS: u64 = 64;

/// Reads old group `g`'s block bitmap into `regions` (unless the group is
/// BLOCK_UNINIT under group checksums: then it is derived, not read).
fn read_bitmap_into(
    dev: &dyn Device,
    old: &OldFs,
    g: u64,
    regions: &mut Regions,
) -> Result<(), FsError> {
    let gi = to_usize(g, "group")?;
    if old.sb.group_desc_csum() && old.descs.flags(gi) & BG_BLOCK_UNINIT != 0 {
        return Ok(());
    }
    let at = old.descs.block_bitmap(gi) * old.geo.block_size;
    let nbytes = to_usize(old.geo.blocks_per_group / 8, "bitmap")?;
    let bm = read(dev, at, nbytes, "reading a block bitmap")?;
    regions.bitmaps.insert(g, bm);
    Ok(())
}

/// The grown layout of the filesystem on `dev` for `dev_bytes`: reads the
/// regions, computes, and reads any further bitmap compute asks for.
pub fn layout_for(dev: &dyn Device, dev_bytes: u64) -> Result<Layout, FsError> {
    let old =
        read_fs(dev)?.ok_or_else(|| FsError::unsupported("the device holds no ext filesystem"))?;
    let mut regions = read_regions(dev, &old)?;
    let dev_blocks = dev_bytes / old.geo.block_size;
    // Each round reads one more group's bitmap, so this ends.
    for _ in 0..=old.geo.groups {
        match compute(&old, &regions, dev_blocks) {
            Ok(layout) => return Ok(layout),
            Err(ComputeError::Fs(e)) => return Err(e),
            Err(ComputeError::Need(g)) if !regions.bitmaps.contains_key(&g) => {
                read_bitmap_into(dev, &old, g, &mut regions)?;
                if !regions.bitmaps.contains_key(&g) {
                    break;
                }
            }
            Err(ComputeError::Need(_)) => break,
        }
    }
    Err(FsError::unsupported(
        "a layout asking for a bitmap it was given (a bug; nothing was written)",
    ))
}
