//! The rules a filesystem must pass before it is grown, as e2fsck checks
//! them: every superblock and group descriptor field the grow reads or
//! writes, each rule a small named function that refuses with the field,
//! its value and what was expected. Superblock fields that need nothing but
//! the superblock are checked in [`Superblock::parse`]; these need the
//! geometry, or say "run e2fsck" rather than "corrupt". Pure.

use super::desc::GroupDescs;
use super::error::FsError;
use super::geometry::Geometry;
use super::layout::to_usize;
use super::superblock::*;

// Offsets of the superblock fields checked here (for messages).
const S_R_BLOCKS_COUNT_LO: u64 = 0x08;
const S_REV_LEVEL: u64 = 0x4C;
const S_FIRST_INO: u64 = 0x54;
const S_RESERVED_GDT_BLOCKS: u64 = 0xCE;
const S_FIRST_META_BG: u64 = 0x104;
const S_INODES_PER_GROUP: u64 = 0x28;
const S_LOG_GROUPS_PER_FLEX: u64 = 0x174;
// Offsets inside a group descriptor.
const BG_FREE_BLOCKS_COUNT_LO: u64 = 0x0C;
const BG_FREE_INODES_COUNT_LO: u64 = 0x0E;
const BG_USED_DIRS_COUNT_LO: u64 = 0x10;
const BG_ITABLE_UNUSED_LO: u64 = 0x1C;
/// The newest `s_rev_level` e2fsprogs knows.
const MAX_REV_LEVEL: u32 = 1;
/// The first inode number a dynamic-revision filesystem may use.
const GOOD_OLD_FIRST_INO: u32 = 11;
/// Most `s_log_groups_per_flex` e2fsck accepts.
const MAX_LOG_GROUPS_PER_FLEX: u8 = 31;

fn sb_corrupt(
    field: &'static str,
    at: u64,
    found: impl ToString,
    expected: impl ToString,
) -> FsError {
    FsError::corrupt("superblock", field, SUPERBLOCK_OFFSET + at, found, expected)
}

/// Every superblock rule, then what resize2fs would send to e2fsck and
/// the features this code does not grow.
pub fn validate_superblock(sb: &Superblock) -> Result<(), FsError> {
    check_growable(sb)?;
    validate_rev_level(sb)?;
    validate_r_blocks_count(sb)?;
    validate_first_ino(sb)?;
    validate_inodes_per_group(sb)?;
    validate_log_groups_per_flex(sb)?;
    let geo = super::layout::geometry_of(sb, sb.blocks_count);
    validate_reserved_gdt_blocks(sb, &geo)?;
    validate_first_meta_bg(&geo)?;
    validate_group_zero_metadata(&geo)?;
    Ok(())
}

fn validate_rev_level(sb: &Superblock) -> Result<(), FsError> {
    if sb.rev_level > MAX_REV_LEVEL {
        return Err(sb_corrupt(
            "s_rev_level",
            S_REV_LEVEL,
            sb.rev_level,
            "0 or 1",
        ));
    }
    Ok(())
}

/// e2fsck: at most half the blocks reserved for root.
fn validate_r_blocks_count(sb: &Superblock) -> Result<(), FsError> {
    if sb.r_blocks_count > sb.blocks_count / 2 {
        return Err(sb_corrupt(
            "s_r_blocks_count",
            S_R_BLOCKS_COUNT_LO,
            sb.r_blocks_count,
            format!("at most half of s_blocks_count ({})", sb.blocks_count / 2),
        ));
    }
    Ok(())
}

fn validate_first_ino(sb: &Superblock) -> Result<(), FsError> {
    if sb.first_ino < GOOD_OLD_FIRST_INO || sb.first_ino > sb.inodes_count {
        return Err(sb_corrupt(
            "s_first_ino",
            S_FIRST_INO,
            sb.first_ino,
            format!("{GOOD_OLD_FIRST_INO}..={}", sb.inodes_count),
        ));
    }
    Ok(())
}

/// A group's inode table holds at least one block of inodes and leaves
/// room in the group for its bitmaps.
fn validate_inodes_per_group(sb: &Superblock) -> Result<(), FsError> {
    let bs = u64::from(sb.block_size());
    let per_block = bs / u64::from(sb.inode_size.max(1));
    let ipg = u64::from(sb.inodes_per_group);
    let table_blocks = (ipg * u64::from(sb.inode_size)).div_ceil(bs);
    if ipg < per_block || table_blocks + 2 >= u64::from(sb.blocks_per_group) {
        return Err(sb_corrupt(
            "s_inodes_per_group",
            S_INODES_PER_GROUP,
            ipg,
            format!(
                "at least {per_block} (one block) and an inode table smaller than the {} blocks of a group",
                sb.blocks_per_group
            ),
        ));
    }
    Ok(())
}

fn validate_log_groups_per_flex(sb: &Superblock) -> Result<(), FsError> {
    if sb.has_incompat(INCOMPAT_FLEX_BG) && sb.log_groups_per_flex > MAX_LOG_GROUPS_PER_FLEX {
        return Err(sb_corrupt(
            "s_log_groups_per_flex",
            S_LOG_GROUPS_PER_FLEX,
            sb.log_groups_per_flex,
            format!("at most {MAX_LOG_GROUPS_PER_FLEX}"),
        ));
    }
    Ok(())
}

/// Reserved GDT blocks: at most a block of pointers (the resize inode's
/// limit), none with meta_bg. Without resize_inode they may remain (the
/// feature cleared by tune2fs/debugfs); they are then plain descriptor
/// room, see `layout::plan_descriptors`.
fn validate_reserved_gdt_blocks(sb: &Superblock, geo: &Geometry) -> Result<(), FsError> {
    let max = geo.block_size / 4;
    if u64::from(sb.reserved_gdt_blocks) > max {
        return Err(sb_corrupt(
            "s_reserved_gdt_blocks",
            S_RESERVED_GDT_BLOCKS,
            sb.reserved_gdt_blocks,
            format!("at most {max}"),
        ));
    }
    if geo.meta_bg && sb.reserved_gdt_blocks != 0 {
        return Err(sb_corrupt(
            "s_reserved_gdt_blocks",
            S_RESERVED_GDT_BLOCKS,
            sb.reserved_gdt_blocks,
            "0 with meta_bg",
        ));
    }
    Ok(())
}

fn validate_first_meta_bg(geo: &Geometry) -> Result<(), FsError> {
    if geo.meta_bg && geo.first_meta_bg > geo.desc_blocks() {
        return Err(sb_corrupt(
            "s_first_meta_bg",
            S_FIRST_META_BG,
            geo.first_meta_bg,
            format!("at most the {} descriptor blocks", geo.desc_blocks()),
        ));
    }
    Ok(())
}

/// Superblock, descriptor table and reserved GDT blocks fit in group 0.
fn validate_group_zero_metadata(geo: &Geometry) -> Result<(), FsError> {
    let classic = if geo.meta_bg {
        geo.first_meta_bg
    } else {
        geo.desc_blocks()
    };
    let need = geo.first_data_block + 1 + classic + geo.reserved_gdt_blocks;
    if need > geo.blocks_per_group.min(geo.blocks_count) {
        return Err(sb_corrupt(
            "s_reserved_gdt_blocks",
            S_RESERVED_GDT_BLOCKS,
            geo.reserved_gdt_blocks,
            format!(
                "superblock + {classic} descriptor blocks + reserved GDT blocks within group 0's {} blocks",
                geo.blocks_per_group.min(geo.blocks_count)
            ),
        ));
    }
    Ok(())
}

/// One metadata extent for the overlap rule: (start, len, group, field,
/// offset of the field inside a descriptor; the backup area has none).
type Extent = (u64, u64, u64, &'static str, Option<u64>);

/// `ext2fs_check_desc`'s rule: bitmaps and inode tables lie inside their
/// own group (anywhere, with flex_bg) and overlap neither each other nor a
/// superblock, descriptor or reserved GDT block. e2fsck -n falls back to
/// the backup descriptors when this fails and may then exit 0; growing
/// from the primary table would write over whatever the pointer names.
pub fn validate_table_locations(
    sb: &Superblock,
    geo: &Geometry,
    descs: &GroupDescs,
    desc_offset: &dyn Fn(u64) -> u64,
) -> Result<(), FsError> {
    let flex = sb.has_incompat(INCOMPAT_FLEX_BG);
    let mut extents: Vec<Extent> = Vec::new();
    for g in 0..geo.groups {
        let gi = to_usize(g, "group")?;
        let backup = geo.backup_len(g);
        if backup > 0 {
            extents.push((
                geo.group_first(g),
                backup,
                g,
                "superblock and descriptors",
                None,
            ));
        }
        for (field, off, start, len) in descs.table_locations(gi, geo.inode_blocks_per_group) {
            let inside = start >= geo.group_first(g)
                && start.saturating_add(len) <= geo.group_first(g) + geo.group_blocks(g);
            if !flex && !inside {
                return Err(FsError::corrupt(
                    "group descriptor",
                    field,
                    desc_offset(g) + off,
                    format!("{start} (group {g})"),
                    format!("a block inside group {g} (no flex_bg)"),
                ));
            }
            extents.push((start, len, g, field, Some(off)));
        }
    }
    extents.sort_unstable_by_key(|e| e.0);
    for pair in extents.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.0.saturating_add(a.1) > b.0 {
            // Name a descriptor field: the later extent's, else the earlier's.
            let (culprit, other) = if b.4.is_some() { (b, a) } else { (a, b) };
            return Err(FsError::corrupt(
                "group descriptor",
                culprit.3,
                desc_offset(culprit.2) + culprit.4.unwrap_or(0),
                format!("{} (group {})", culprit.0, culprit.2),
                format!(
                    "a block clear of the {} of group {} (blocks {}..{})",
                    other.3,
                    other.2,
                    other.0,
                    other.0.saturating_add(other.1)
                ),
            ));
        }
    }
    Ok(())
}

/// Every descriptor's counts: free blocks within the group, free inodes,
/// directories and unused inodes within `s_inodes_per_group`; and the
/// totals the superblock keeps.
pub fn validate_descriptors(
    sb: &Superblock,
    geo: &Geometry,
    descs: &GroupDescs,
    desc_offset: &dyn Fn(u64) -> u64,
) -> Result<(), FsError> {
    let ipg = sb.inodes_per_group;
    for g in 0..geo.groups {
        let gi = to_usize(g, "group")?;
        let blocks = geo.group_blocks(g);
        let checks = [
            (
                "bg_free_blocks_count",
                BG_FREE_BLOCKS_COUNT_LO,
                u64::from(descs.free_blocks(gi)),
                blocks,
            ),
            (
                "bg_free_inodes_count",
                BG_FREE_INODES_COUNT_LO,
                u64::from(descs.free_inodes(gi)),
                u64::from(ipg),
            ),
            (
                "bg_used_dirs_count",
                BG_USED_DIRS_COUNT_LO,
                u64::from(descs.used_dirs(gi)),
                u64::from(ipg),
            ),
            (
                "bg_itable_unused",
                BG_ITABLE_UNUSED_LO,
                u64::from(descs.itable_unused(gi)),
                u64::from(ipg),
            ),
        ];
        for (field, off, value, max) in checks {
            if value > max {
                return Err(FsError::corrupt(
                    "group descriptor",
                    field,
                    desc_offset(g) + off,
                    format!("{value} (group {g})"),
                    format!("at most {max}"),
                ));
            }
        }
    }
    Ok(())
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
                        "unknown {set:?} feature bit {bit:#x} (s_feature_{})",
                        format!("{set:?}").to_lowercase()
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
    fn each_superblock_rule_names_its_field() {
        let cases: [(Mutation, &str); 6] = [
            (|sb| sb.r_blocks_count = 0xFFFF_FFFF, "s_r_blocks_count"),
            (|sb| sb.first_ino = 3, "s_first_ino"),
            (|sb| sb.rev_level = 2, "s_rev_level"),
            (
                |sb| {
                    sb.feature_incompat |= INCOMPAT_FLEX_BG;
                    sb.log_groups_per_flex = 40;
                },
                "s_log_groups_per_flex",
            ),
            (|sb| sb.inodes_per_group = 1, "s_inodes_per_group"),
            (|sb| sb.reserved_gdt_blocks = 5000, "s_reserved_gdt_blocks"),
        ];
        for (change, field) in cases {
            let mut sb = Superblock::parse(&golden(), SUPERBLOCK_OFFSET).unwrap();
            validate_superblock(&sb).unwrap();
            change(&mut sb);
            match validate_superblock(&sb).unwrap_err() {
                FsError::Corrupt { field: f, .. } => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
