//! Turning a computed [`Layout`] into block writes: first the list of what
//! changes (pure), then the writes themselves, ordered so that the primary
//! descriptor table and superblock, which make the new groups visible, go
//! last.

use super::bitmap::set_range;
use super::csum::crc32c_raw;
use super::desc::{GroupDescs, BG_BLOCK_UNINIT, BG_INODE_UNINIT};
use super::error::FsError;
use super::layout::{resize_inode_sectors, Layout, Strategy};
use super::place::allocated_in;
use super::superblock::{COMPAT_RESIZE_INODE, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::disk::device::Device;

/// One write growing makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    NewBlockBitmap(u64),
    NewInodeBitmap(u64),
    ZeroInodeTable(u64),
    OldBlockBitmap(u64),
    ResizeDind,
    ResizeReserved(u64),
    ResizeInodeRecord,
    BackupSuper(u64),
    DescBlock { index: u64, block: u64 },
    PrimarySuper,
}

/// Every write, in the order they are made.
pub fn writes(layout: &Layout) -> Vec<Write> {
    let mut out = Vec::new();
    if layout.strategy == Strategy::NoChange {
        return out;
    }
    let geo = &layout.geo;
    let csum = layout.sb.group_desc_csum();
    for g in layout.old_geo.groups..geo.groups {
        let gi = usize::try_from(g).unwrap_or(usize::MAX);
        let flags = layout.descs.flags(gi);
        if !csum || flags & BG_BLOCK_UNINIT == 0 {
            out.push(Write::NewBlockBitmap(g));
        }
        if !csum || flags & BG_INODE_UNINIT == 0 {
            out.push(Write::NewInodeBitmap(g));
            out.push(Write::ZeroInodeTable(g));
        }
    }
    out.extend(layout.old_bitmaps.keys().map(|&g| Write::OldBlockBitmap(g)));
    if layout.resize_inode.is_some() {
        if layout.sb.has_compat(COMPAT_RESIZE_INODE) {
            out.push(Write::ResizeDind);
            out.extend((0..geo.reserved_gdt_blocks).map(Write::ResizeReserved));
        }
        out.push(Write::ResizeInodeRecord);
    }
    out.extend(geo.backup_groups().map(Write::BackupSuper));
    let mut primary = Vec::new();
    for index in 0..geo.desc_blocks() {
        for (group, block) in geo.desc_block_locations(index) {
            let w = Write::DescBlock { index, block };
            if group == 0 {
                primary.push(w);
            } else {
                out.push(w);
            }
        }
    }
    out.extend(primary);
    out.push(Write::PrimarySuper);
    out
}

/// The blocks a write covers, as (first block, count).
pub fn blocks_of(layout: &Layout, w: Write) -> (u64, u64) {
    let geo = &layout.geo;
    let gi = |g: u64| usize::try_from(g).unwrap_or(usize::MAX);
    match w {
        Write::NewBlockBitmap(g) | Write::OldBlockBitmap(g) => {
            (layout.descs.block_bitmap(gi(g)), 1)
        }
        Write::NewInodeBitmap(g) => (layout.descs.inode_bitmap(gi(g)), 1),
        Write::ZeroInodeTable(g) => (layout.descs.inode_table(gi(g)), geo.inode_blocks_per_group),
        Write::ResizeDind => (layout.resize_inode.as_ref().map_or(0, |r| r.dind), 1),
        Write::ResizeReserved(k) => (geo.first_data_block + 1 + geo.desc_blocks() + k, 1),
        Write::ResizeInodeRecord => (
            layout
                .resize_inode
                .as_ref()
                .map_or(0, |r| r.offset / geo.block_size),
            1,
        ),
        Write::BackupSuper(g) => (geo.group_first(g), 1),
        Write::DescBlock { block, .. } => (block, 1),
        Write::PrimarySuper => (SUPERBLOCK_OFFSET / geo.block_size, 1),
    }
}

/// The writes as merged block ranges, ascending.
pub fn changed_ranges(layout: &Layout) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = writes(layout)
        .into_iter()
        .map(|w| blocks_of(layout, w))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, len) in ranges {
        match merged.last_mut() {
            Some((s, l)) if start <= *s + *l => *l = (*l).max(start + len - *s),
            _ => merged.push((start, len)),
        }
    }
    merged
}

fn io_err(operation: &'static str, offset: u64) -> impl FnOnce(std::io::Error) -> FsError {
    move |source| FsError::Io {
        operation,
        offset,
        source,
    }
}

/// A new group's block bitmap block: backups, tables placed in it, and
/// padding past the last block set.
fn new_block_bitmap(layout: &Layout, g: u64, bs: usize) -> Vec<u8> {
    let geo = &layout.geo;
    let mut buf = vec![0xFFu8; bs];
    set_range(&mut buf, 0, geo.blocks_per_group, false);
    set_range(&mut buf, 0, geo.backup_len(g), true);
    let first = geo.group_first(g);
    for (s, l) in allocated_in(&layout.allocated, first, first + geo.blocks_per_group) {
        set_range(&mut buf, s - first, l, true);
    }
    let blocks = geo.group_blocks(g);
    set_range(&mut buf, blocks, geo.blocks_per_group - blocks, true);
    buf
}

/// What every write of one layout shares.
struct Ctx<'a> {
    layout: &'a Layout,
    bs: usize,
    bitmap_bytes: usize,
    inode_bitmap_bytes: usize,
    seed: u32,
}

impl Ctx<'_> {
    fn write(
        &self,
        dev: &mut dyn Device,
        block: u64,
        data: &[u8],
        what: &'static str,
    ) -> Result<(), FsError> {
        let offset = block * self.layout.geo.block_size;
        dev.write_at(offset, data).map_err(io_err(what, offset))
    }
}

/// Makes one write of the first pass (everything but descriptor blocks and
/// the primary superblock); bitmap checksums go into `descs`.
fn write_one(
    dev: &mut dyn Device,
    ctx: &Ctx<'_>,
    descs: &mut GroupDescs,
    w: Write,
) -> Result<(), FsError> {
    let layout = ctx.layout;
    let (geo, sb, bs, seed) = (&layout.geo, &layout.sb, ctx.bs, ctx.seed);
    let (bitmap_bytes, inode_bitmap_bytes) = (ctx.bitmap_bytes, ctx.inode_bitmap_bytes);
    let gi = |g: u64| usize::try_from(g).unwrap_or(usize::MAX);
    let write = |dev: &mut dyn Device, block: u64, data: &[u8], what: &'static str| {
        ctx.write(dev, block, data, what)
    };
    match w {
        Write::NewBlockBitmap(g) | Write::OldBlockBitmap(g) => {
            let buf = if let Write::NewBlockBitmap(_) = w {
                new_block_bitmap(layout, g, bs)
            } else {
                let mut buf = vec![0xFFu8; bs];
                if let Some(bm) = layout.old_bitmaps.get(&g) {
                    buf[..bm.len()].copy_from_slice(bm);
                }
                buf
            };
            if sb.metadata_csum() {
                descs.set_block_bitmap_csum(gi(g), crc32c_raw(seed, &buf[..bitmap_bytes]));
            }
            let at = descs.block_bitmap(gi(g));
            write(dev, at, &buf, "writing a block bitmap")?;
        }
        Write::NewInodeBitmap(g) => {
            let mut buf = vec![0xFFu8; bs];
            buf[..inode_bitmap_bytes].fill(0);
            if sb.metadata_csum() {
                descs.set_inode_bitmap_csum(gi(g), crc32c_raw(seed, &buf[..inode_bitmap_bytes]));
            }
            write(
                dev,
                descs.inode_bitmap(gi(g)),
                &buf,
                "writing an inode bitmap",
            )?;
        }
        Write::ZeroInodeTable(g) => {
            const CHUNK_BLOCKS: u64 = 256;
            let start = descs.inode_table(gi(g));
            let zeros = vec![0u8; bs * 256];
            let mut done = 0;
            while done < geo.inode_blocks_per_group {
                let n = CHUNK_BLOCKS.min(geo.inode_blocks_per_group - done);
                let len = usize::try_from(n).unwrap_or(0) * bs;
                write(dev, start + done, &zeros[..len], "zeroing an inode table")?;
                done += n;
            }
        }
        Write::ResizeDind => {
            let Some(ri) = &layout.resize_inode else {
                return Ok(());
            };
            let apb = geo.block_size / 4;
            let mut buf = vec![0u8; bs];
            for k in 0..geo.reserved_gdt_blocks {
                let slot = (geo.desc_blocks() + k) % apb;
                let blk = geo.first_data_block + 1 + geo.desc_blocks() + k;
                put_u32(&mut buf, slot, blk)?;
            }
            write(
                dev,
                ri.dind,
                &buf,
                "writing the resize inode's indirect block",
            )?;
        }
        Write::ResizeReserved(k) => {
            let blk = geo.first_data_block + 1 + geo.desc_blocks() + k;
            let mut buf = vec![0u8; bs];
            for (slot, g) in geo.backup_groups().enumerate() {
                put_u32(&mut buf, slot as u64, blk + g * geo.blocks_per_group)?;
            }
            write(dev, blk, &buf, "writing a reserved GDT block")?;
        }
        Write::ResizeInodeRecord => {
            let Some(ri) = &layout.resize_inode else {
                return Ok(());
            };
            let keep = sb.has_compat(COMPAT_RESIZE_INODE);
            let sectors = if keep { resize_inode_sectors(geo) } else { 0 };
            let raw = ri.updated(sb, sectors, !keep);
            dev.write_at(ri.offset, &raw)
                .map_err(io_err("writing the resize inode", ri.offset))?;
        }
        Write::BackupSuper(g) => {
            let nr = u16::try_from(g).unwrap_or(u16::MAX);
            let raw = sb.to_bytes(nr);
            write(dev, geo.group_first(g), &raw, "writing a backup superblock")?;
        }
        Write::DescBlock { .. } | Write::PrimarySuper => {}
    }
    Ok(())
}

/// Writes `layout` to `dev`.
pub fn apply(dev: &mut dyn Device, layout: &Layout) -> Result<(), FsError> {
    let list = writes(layout);
    if list.is_empty() {
        return Ok(());
    }
    let geo = &layout.geo;
    let sb = &layout.sb;
    let bs = usize::try_from(geo.block_size).map_err(|_| FsError::unsupported("block size"))?;
    let ctx = Ctx {
        layout,
        bs,
        bitmap_bytes: usize::try_from(geo.blocks_per_group / 8).unwrap_or(bs),
        inode_bitmap_bytes: usize::try_from(sb.inodes_per_group / 8).unwrap_or(bs),
        seed: sb.csum_seed(),
    };
    let mut descs = layout.descs.clone();
    for &w in &list {
        write_one(dev, &ctx, &mut descs, w)?;
    }

    // Checksums last: every bitmap sum is in place now.
    for g in 0..descs.count() {
        descs.seal(sb, g);
    }
    let table = descs.as_bytes();
    for &w in &list {
        match w {
            Write::DescBlock { index, block } => {
                let start = usize::try_from(index)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(bs);
                let mut buf = vec![0u8; bs];
                if let Some(src) = table.get(start..) {
                    let n = src.len().min(bs);
                    buf[..n].copy_from_slice(&src[..n]);
                }
                ctx.write(dev, block, &buf, "writing group descriptors")?;
            }
            Write::PrimarySuper => {
                let raw = sb.to_bytes(0);
                debug_assert_eq!(raw.len(), SUPERBLOCK_SIZE);
                dev.write_at(SUPERBLOCK_OFFSET, &raw)
                    .map_err(io_err("writing the superblock", SUPERBLOCK_OFFSET))?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn put_u32(buf: &mut [u8], slot: u64, value: u64) -> Result<(), FsError> {
    let v = u32::try_from(value)
        .map_err(|_| FsError::unsupported(format!("resize inode pointer {value} beyond 2^32")))?;
    let at = usize::try_from(slot * 4).unwrap_or(usize::MAX);
    let dst = buf
        .get_mut(at..at + 4)
        .ok_or_else(|| FsError::unsupported("more backups than one resize-inode block can list"))?;
    dst.copy_from_slice(&v.to_le_bytes());
    Ok(())
}
