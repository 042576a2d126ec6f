//! Placing new groups' bitmaps and inode tables as e2fsprogs'
//! `ext2fs_allocate_group_table` places them (the flex_bg packing resize2fs
//! uses), over a view of which blocks are in use: old groups' bitmaps come
//! from the regions read beforehand (a bitmap not read yet is asked for
//! with [`ComputeError::Need`]), new groups are described by their backup
//! prefix plus the extents allocated so far. Pure.

use std::collections::{BTreeMap, BTreeSet};

use super::bitmap::{bit, set_range};
use super::csum::crc32c_raw;
use super::desc::{GroupDescs, BG_BLOCK_UNINIT};
use super::error::FsError;
use super::geometry::Geometry;
use super::layout::{to_usize, ComputeError, OldFs, Regions};

/// Old groups' block bitmaps (bpg/8 bytes each), taken from the regions
/// read before computing (or derived, for BLOCK_UNINIT groups) when first
/// needed, with the blocks the last old group gains marked free.
pub(super) struct OldBitmaps<'a> {
    pub old: &'a OldFs,
    pub regions: &'a Regions,
    pub new_geo: Geometry,
    pub cache: BTreeMap<u64, Vec<u8>>,
}

/// The state of the table-placement emulation.
pub(super) struct Placer<'a> {
    pub geo: Geometry,
    pub descs: GroupDescs,
    pub allocated: BTreeMap<u64, u64>,
    pub bitmaps: OldBitmaps<'a>,
    pub hosts: BTreeSet<u64>,
}

impl OldBitmaps<'_> {
    /// The block bitmap of old group `g`: read (checksum verified), or
    /// derived for a BLOCK_UNINIT group; blocks past the old end that now
    /// exist are free.
    pub fn get(&mut self, g: u64) -> Result<&mut Vec<u8>, ComputeError> {
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
                let bm = match self.regions.bitmaps.get(&g) {
                    Some(bm) if bm.len() == nbytes => bm.clone(),
                    _ => return Err(ComputeError::Need(g)),
                };
                if old.sb.metadata_csum() {
                    let (stored, mask) = old.descs.block_bitmap_csum(gi);
                    let computed = crc32c_raw(old.sb.csum_seed(), &bm) & mask;
                    if stored != computed {
                        return Err(ComputeError::Fs(FsError::corrupt(
                            "block bitmap",
                            "bg_block_bitmap_csum",
                            at,
                            format!("{stored:#x} (group {g})"),
                            format!("{computed:#x} (computed)"),
                        )));
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
            .ok_or_else(|| FsError::unsupported("bitmap cache").into())
    }
}

impl Placer<'_> {
    /// The first block in use in `lo..hi`, if any.
    fn first_used(&mut self, lo: u64, hi: u64) -> Result<Option<u64>, ComputeError> {
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
            if g < self.bitmaps.old.geo.groups {
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
    fn get_free(&mut self, start: u64, finish: u64, num: u64) -> Result<Option<u64>, ComputeError> {
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
    ) -> Result<u64, ComputeError> {
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
    ) -> Result<u64, ComputeError> {
        match self.get_free(start, last_blk, 1)? {
            Some(b) => Ok(b),
            None => self
                .get_free(group_blk, last_blk, 1)?
                .ok_or_else(|| self.no_room(group, what).into()),
        }
    }

    /// `ext2fs_allocate_group_table` for new group `group`.
    pub fn allocate_group_table(&mut self, group: u64) -> Result<(), ComputeError> {
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
            .ok_or_else(|| ComputeError::from(self.no_room(group, "inode table")))?;
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
pub(super) fn overlap(group: u64) -> FsError {
    FsError::unsupported(format!(
        "a layout with more blocks in use than group {group} holds (a bug; nothing was written)"
    ))
}
