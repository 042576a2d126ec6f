//! Free blocks of ext2/3/4, from the block bitmaps, one group at a time.
//!
//! A block is free when its group's bitmap says so and it is none of the
//! filesystem's own metadata (superblock and descriptor copies, reserved GDT
//! blocks, bitmaps, inode tables: forced in use even if a bitmap forgot
//! them). A group flagged `BLOCK_UNINIT` (only honoured with group
//! checksums, as the kernel does) has no bitmap on disk: its used blocks are
//! its metadata alone. The journal and the resize inode's blocks are marked
//! in the bitmaps. Before anything is trusted, [`FreeSpace::validate`] reads
//! every bitmap once and checks its checksum (metadata_csum) and that its
//! free count is the descriptor's; the descriptors' own checksums are checked
//! when they are read.
//!
//! Kept as they are: a filesystem in the error state, not cleanly unmounted,
//! or whose journal needs recovery; bigalloc (cluster bitmaps),
//! sparse_super2, journal devices, snapshots and unknown incompatible
//! features.

use super::{read, runs_from_bitmap, FreeSpace, Run, UsageError};
use crate::disk::device::Device;
use crate::fs::ext::desc::{check_groups, GroupDescs, BG_BLOCK_UNINIT};
use crate::fs::ext::geometry::Geometry;
use crate::fs::ext::superblock::*;
use crate::fs::ext::{geometry_of, FsError};

/// Largest descriptor table read (a 2 TiB filesystem with 4 KiB blocks has
/// 1 MiB of 64-byte descriptors).
const MAX_DESC_TABLE_BYTES: u64 = 64 << 20;

/// Incompatible features this reader knows the block layout of.
const KNOWN_INCOMPAT: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_DIRDATA
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;

/// An ext2/3/4 filesystem whose descriptors have been read and checked.
pub struct ExtFree {
    kind: &'static str,
    sb: Superblock,
    geo: Geometry,
    descs: GroupDescs,
    /// Every group's bitmaps and inode table as `(first block, count)`,
    /// sorted and merged.
    tables: Vec<(u64, u64)>,
}

fn from_fs(e: FsError) -> UsageError {
    match e {
        FsError::Corrupt {
            structure,
            field,
            offset,
            found,
            expected,
        } => UsageError::Corrupt {
            structure,
            field,
            offset,
            found,
            expected,
        },
        FsError::Io {
            operation,
            offset,
            source,
        } => UsageError::Io {
            what: operation,
            offset,
            source,
        },
        other => UsageError::unsupported(other.to_string()),
    }
}

fn to_usize(v: u64, what: &str) -> Result<usize, UsageError> {
    usize::try_from(v).map_err(|_| UsageError::unsupported(format!("{what} {v}")))
}

/// Refuses what makes the bitmaps untrustworthy or unreadable here.
fn check_readable(sb: &Superblock) -> Result<(), UsageError> {
    if sb.state & STATE_ERROR_FS != 0 {
        return Err(UsageError::unclean(
            "the filesystem is in the error state (s_state has ERROR_FS): run e2fsck -f",
        ));
    }
    if sb.state & STATE_VALID_FS == 0 {
        return Err(UsageError::unclean(
            "the filesystem was not cleanly unmounted (s_state lacks VALID_FS): run e2fsck -f",
        ));
    }
    if sb.has_incompat(INCOMPAT_RECOVER) {
        return Err(UsageError::unclean(
            "the journal needs recovery (needs_recovery): mount it once or run e2fsck",
        ));
    }
    let unknown = sb.feature_incompat & !KNOWN_INCOMPAT;
    for (bit, name) in [
        (RO_COMPAT_BIGALLOC, "bigalloc (cluster bitmaps)"),
        (RO_COMPAT_HAS_SNAPSHOT, "snapshots"),
    ] {
        if sb.has_ro_compat(bit) {
            return Err(UsageError::unsupported(format!("ext feature {name}")));
        }
    }
    if sb.has_compat(COMPAT_SPARSE_SUPER2) {
        return Err(UsageError::unsupported("ext feature sparse_super2"));
    }
    if sb.has_incompat(INCOMPAT_JOURNAL_DEV) {
        return Err(UsageError::unsupported("an external journal device"));
    }
    if unknown != 0 {
        return Err(UsageError::unsupported(format!(
            "unknown incompatible ext features {unknown:#x}"
        )));
    }
    Ok(())
}

/// Checks the shape before any size is derived from it.
fn check_geometry(geo: &Geometry, dev: &dyn Device) -> Result<(), UsageError> {
    let field = |name, off: u64, found: u64, expected: String| {
        Err(UsageError::corrupt(
            "superblock",
            name,
            SUPERBLOCK_OFFSET + off,
            found,
            expected,
        ))
    };
    let dev_blocks = dev.size_bytes() / geo.block_size;
    if geo.blocks_count > dev_blocks {
        return field(
            "s_blocks_count",
            0x04,
            geo.blocks_count,
            format!("at most the partition's {dev_blocks} blocks"),
        );
    }
    if geo.reserved_gdt_blocks > geo.block_size / 4 {
        return field(
            "s_reserved_gdt_blocks",
            0xCE,
            geo.reserved_gdt_blocks,
            format!("at most {}", geo.block_size / 4),
        );
    }
    if geo.desc_size < 32 || geo.desc_size > geo.block_size {
        return field(
            "s_desc_size",
            0xFE,
            geo.desc_size,
            format!("32..={}", geo.block_size),
        );
    }
    if geo.meta_bg && geo.first_meta_bg > geo.desc_blocks() {
        return field(
            "s_first_meta_bg",
            0x104,
            geo.first_meta_bg,
            format!("at most the {} descriptor blocks", geo.desc_blocks()),
        );
    }
    let table = geo.desc_blocks().saturating_mul(geo.block_size);
    if table > MAX_DESC_TABLE_BYTES {
        return Err(UsageError::unsupported(format!(
            "a descriptor table of {table} bytes"
        )));
    }
    Ok(())
}

/// Reads the descriptor table (its primary copy of every block) and checks
/// every descriptor's checksum and table locations.
fn read_descs(dev: &dyn Device, sb: &Superblock, geo: &Geometry) -> Result<GroupDescs, UsageError> {
    let bs = to_usize(geo.block_size, "block size")?;
    let mut table = Vec::new();
    let mut offsets = Vec::new();
    for index in 0..geo.desc_blocks() {
        let at = geo
            .desc_block_locations(index)
            .first()
            .map(|l| l.1)
            .ok_or_else(|| {
                UsageError::corrupt(
                    "group descriptor table",
                    "block",
                    0,
                    index,
                    "a stored block",
                )
            })?;
        if at >= geo.blocks_count {
            return Err(UsageError::corrupt(
                "group descriptor table",
                "block",
                0,
                at,
                "a block inside the filesystem",
            ));
        }
        offsets.push(at * geo.block_size);
        table.extend(read(dev, at * geo.block_size, bs, "group descriptors")?);
    }
    let groups = to_usize(geo.groups, "group count")?;
    let desc_size = to_usize(geo.desc_size, "descriptor size")?;
    let descs = GroupDescs::from_bytes(table, desc_size, groups)
        .ok_or_else(|| UsageError::corrupt("group descriptor table", "length", 0, 0, groups))?;
    let per = to_usize(geo.desc_per_block(), "descriptors per block")?;
    let desc_at = |g: u64| {
        let g = usize::try_from(g).unwrap_or(usize::MAX);
        offsets.get(g / per).copied().unwrap_or(0) + ((g % per) * desc_size) as u64
    };
    check_groups(sb, geo, &descs, &desc_at)?;
    Ok(descs)
}

/// Every group's bitmaps and inode table, sorted and merged.
fn table_extents(descs: &GroupDescs, geo: &Geometry) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = (0..descs.count())
        .flat_map(|g| {
            [
                (descs.block_bitmap(g), 1),
                (descs.inode_bitmap(g), 1),
                (descs.inode_table(g), geo.inode_blocks_per_group),
            ]
        })
        .collect();
    v.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (b, n) in v {
        match merged.last_mut() {
            Some(last) if b <= last.0 + last.1 => {
                last.1 = last.1.max(b + n - last.0);
            }
            _ => merged.push((b, n)),
        }
    }
    merged
}

/// Reads an ext filesystem at the start of `dev`: `None` without the ext
/// magic; an error when its free space cannot be trusted or read.
pub fn open(dev: &dyn Device) -> Result<Option<ExtFree>, UsageError> {
    if dev.size_bytes() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
        return Ok(None);
    }
    let raw = read(
        dev,
        SUPERBLOCK_OFFSET,
        SUPERBLOCK_SIZE,
        "the ext superblock",
    )?;
    if raw.get(0x38..0x3A) != Some(&EXT_MAGIC.to_le_bytes()[..]) {
        return Ok(None);
    }
    let sb = Superblock::parse(&raw, SUPERBLOCK_OFFSET).map_err(from_fs)?;
    check_readable(&sb)?;
    let geo = geometry_of(&sb, sb.blocks_count);
    check_geometry(&geo, dev)?;
    let descs = read_descs(dev, &sb, &geo)?;
    let tables = table_extents(&descs, &geo);
    let kind = crate::fs::ext::probe(dev)
        .map_err(from_fs)?
        .map_or("ext2", |info| info.kind);
    Ok(Some(ExtFree {
        kind,
        sb,
        geo,
        descs,
        tables,
    }))
}

impl ExtFree {
    fn uninit(&self, g: usize) -> bool {
        self.sb.group_desc_csum() && self.descs.flags(g) & BG_BLOCK_UNINIT != 0
    }

    /// Group `g`'s usage, one bit per block of the group (bit set = in
    /// use): its bitmap (checksum checked), or nothing for an
    /// uninitialised group, with every piece of metadata in the group set.
    fn group_bits(&self, dev: &dyn Device, g: u64) -> Result<Vec<u8>, UsageError> {
        let gi = to_usize(g, "group")?;
        let bs = to_usize(self.geo.block_size, "block size")?;
        let first = self.geo.group_first(g);
        let count = self.geo.group_blocks(g);
        let mut bits = if self.uninit(gi) {
            vec![0u8; bs]
        } else {
            let at = self.descs.block_bitmap(gi) * self.geo.block_size;
            let bitmap = read(dev, at, bs, "a block bitmap")?;
            self.check_bitmap_csum(gi, &bitmap, at)?;
            bitmap
        };
        let mut mark = |from: u64, n: u64| {
            let lo = from.max(first);
            let hi = from.saturating_add(n).min(first + count);
            if hi > lo {
                crate::fs::ext::bitmap::set_range(&mut bits, lo - first, hi - lo, true);
            }
        };
        mark(first, self.geo.backup_len(g));
        let start = self.tables.partition_point(|t| t.0 + t.1 <= first);
        for &(b, n) in self.tables[start..]
            .iter()
            .take_while(|t| t.0 < first + count)
        {
            mark(b, n);
        }
        Ok(bits)
    }

    fn check_bitmap_csum(&self, g: usize, bitmap: &[u8], at: u64) -> Result<(), UsageError> {
        if !self.sb.metadata_csum() {
            return Ok(());
        }
        let len = usize::try_from(self.sb.clusters_per_group() / 8)
            .unwrap_or(usize::MAX)
            .min(bitmap.len());
        let computed = crate::fs::ext::csum::crc32c_raw(self.sb.csum_seed(), &bitmap[..len]);
        let (stored, mask) = self.descs.block_bitmap_csum(g);
        if stored != computed & mask {
            return Err(UsageError::corrupt(
                "block bitmap",
                "bg_block_bitmap_csum",
                at,
                format!("{stored:#x} (group {g})"),
                format!("{:#x} (computed)", computed & mask),
            ));
        }
        Ok(())
    }
}

impl FreeSpace for ExtFree {
    fn name(&self) -> &'static str {
        self.kind
    }

    fn size_bytes(&self) -> u64 {
        self.geo.blocks_count * self.geo.block_size
    }

    fn free_runs(
        &self,
        dev: &dyn Device,
        start: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        let bs = self.geo.block_size;
        let end = start.saturating_add(len).min(self.size_bytes());
        let first_block = (start / bs).max(self.geo.first_data_block);
        if end == 0 || first_block * bs >= end {
            return Ok(());
        }
        let last_block = (end - 1) / bs;
        for g in self.geo.group_of(first_block)..=self.geo.group_of(last_block) {
            let bits = self.group_bits(dev, g)?;
            let gfirst = self.geo.group_first(g);
            let from = first_block.max(gfirst) - gfirst;
            let to = (last_block + 1).min(gfirst + self.geo.group_blocks(g)) - gfirst;
            runs_from_bitmap(
                &bits,
                (from, to),
                bs,
                gfirst * bs,
                (start, end - start),
                out,
            );
        }
        Ok(())
    }

    fn validate(&self, dev: &dyn Device) -> Result<u64, UsageError> {
        let mut free = 0u64;
        for g in 0..self.geo.groups {
            let gi = to_usize(g, "group")?;
            let first = self.geo.group_first(g) * self.geo.block_size;
            let span = self.geo.group_blocks(g) * self.geo.block_size;
            let bytes = self.free_bytes_in(dev, first, span)?;
            let blocks = bytes / self.geo.block_size;
            let stated = u64::from(self.descs.free_blocks(gi));
            // An uninitialised group's metadata is counted here even where
            // another group's tables sit in it, so it may count fewer.
            let consistent = if self.uninit(gi) {
                blocks <= stated
            } else {
                blocks == stated
            };
            if !consistent {
                return Err(UsageError::unclean(format!(
                    "group {g}: the block bitmap has {blocks} free blocks, the descriptor says {stated}: run e2fsck -f"
                )));
            }
            free += bytes;
        }
        Ok(free)
    }
}
