//! The ext2/3/4 superblock: 1024 bytes at byte 1024 of the filesystem (and,
//! in backup groups, at the start of the group's first block). Parsing is
//! pure: fields are read at the offsets of the on-disk layout, validated, and
//! kept beside the raw bytes so that writing changes only what we change.

use super::csum::crc32c_raw;
use super::error::FsError;

/// Size of the superblock in bytes.
pub const SUPERBLOCK_SIZE: usize = 1024;
/// Byte offset of the primary superblock.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// `s_magic`.
pub const EXT_MAGIC: u16 = 0xEF53;

// Field offsets, named as in the on-disk layout.
const S_INODES_COUNT: usize = 0x00;
const S_BLOCKS_COUNT_LO: usize = 0x04;
const S_R_BLOCKS_COUNT_LO: usize = 0x08;
const S_FREE_BLOCKS_COUNT_LO: usize = 0x0C;
const S_FREE_INODES_COUNT: usize = 0x10;
const S_FIRST_DATA_BLOCK: usize = 0x14;
const S_LOG_BLOCK_SIZE: usize = 0x18;
const S_LOG_CLUSTER_SIZE: usize = 0x1C;
const S_BLOCKS_PER_GROUP: usize = 0x20;
const S_CLUSTERS_PER_GROUP: usize = 0x24;
const S_INODES_PER_GROUP: usize = 0x28;
const S_MTIME: usize = 0x2C;
const S_MAGIC: usize = 0x38;
const S_STATE: usize = 0x3A;
const S_LASTCHECK: usize = 0x40;
const S_REV_LEVEL: usize = 0x4C;
const S_FIRST_INO: usize = 0x54;
const S_INODE_SIZE: usize = 0x58;
const S_BLOCK_GROUP_NR: usize = 0x5A;
const S_FEATURE_COMPAT: usize = 0x5C;
const S_FEATURE_INCOMPAT: usize = 0x60;
const S_FEATURE_RO_COMPAT: usize = 0x64;
const S_UUID: usize = 0x68;
const S_RESERVED_GDT_BLOCKS: usize = 0xCE;
const S_LAST_ORPHAN: usize = 0xE8;
const S_DESC_SIZE: usize = 0xFE;
const S_FIRST_META_BG: usize = 0x104;
const S_BLOCKS_COUNT_HI: usize = 0x150;
const S_R_BLOCKS_COUNT_HI: usize = 0x154;
const S_FREE_BLOCKS_COUNT_HI: usize = 0x158;
const S_LOG_GROUPS_PER_FLEX: usize = 0x174;
const S_CHECKSUM_TYPE: usize = 0x175;
const S_OVERHEAD_CLUSTERS: usize = 0x248;
const S_CHECKSUM_SEED: usize = 0x270;
const S_CHECKSUM: usize = 0x3FC;

/// `s_state` bits.
pub const STATE_VALID_FS: u16 = 0x0001;
pub const STATE_ERROR_FS: u16 = 0x0002;

/// `s_rev_level` of filesystems with dynamic inode sizes and features.
const DYNAMIC_REV: u32 = 1;
const GOOD_OLD_INODE_SIZE: u16 = 128;
const GOOD_OLD_FIRST_INO: u32 = 11;
/// `s_checksum_type` for CRC32C, the only one defined.
const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// Group descriptor sizes.
pub const DESC_SIZE_32: u32 = 32;
pub const DESC_SIZE_64: u32 = 64;
const MAX_LOG_BLOCK_SIZE: u32 = 6; // 64 KiB
const MIN_BLOCK_SIZE: u32 = 1024;

// Feature bits.
pub const COMPAT_DIR_PREALLOC: u32 = 0x0001;
pub const COMPAT_IMAGIC_INODES: u32 = 0x0002;
pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
pub const COMPAT_EXT_ATTR: u32 = 0x0008;
pub const COMPAT_RESIZE_INODE: u32 = 0x0010;
pub const COMPAT_DIR_INDEX: u32 = 0x0020;
pub const COMPAT_LAZY_BG: u32 = 0x0040;
pub const COMPAT_EXCLUDE_BITMAP: u32 = 0x0100;
pub const COMPAT_SPARSE_SUPER2: u32 = 0x0200;
pub const COMPAT_FAST_COMMIT: u32 = 0x0400;
pub const COMPAT_STABLE_INODES: u32 = 0x0800;
pub const COMPAT_ORPHAN_FILE: u32 = 0x1000;

pub const INCOMPAT_COMPRESSION: u32 = 0x0001;
pub const INCOMPAT_FILETYPE: u32 = 0x0002;
pub const INCOMPAT_RECOVER: u32 = 0x0004;
pub const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
pub const INCOMPAT_META_BG: u32 = 0x0010;
pub const INCOMPAT_EXTENTS: u32 = 0x0040;
pub const INCOMPAT_64BIT: u32 = 0x0080;
pub const INCOMPAT_MMP: u32 = 0x0100;
pub const INCOMPAT_FLEX_BG: u32 = 0x0200;
pub const INCOMPAT_EA_INODE: u32 = 0x0400;
pub const INCOMPAT_DIRDATA: u32 = 0x1000;
pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
pub const INCOMPAT_CASEFOLD: u32 = 0x20000;

pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
pub const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
pub const RO_COMPAT_HUGE_FILE: u32 = 0x0008;
pub const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
pub const RO_COMPAT_DIR_NLINK: u32 = 0x0020;
pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x0040;
pub const RO_COMPAT_HAS_SNAPSHOT: u32 = 0x0080;
pub const RO_COMPAT_QUOTA: u32 = 0x0100;
pub const RO_COMPAT_BIGALLOC: u32 = 0x0200;
pub const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
pub const RO_COMPAT_REPLICA: u32 = 0x0800;
pub const RO_COMPAT_READONLY: u32 = 0x1000;
pub const RO_COMPAT_PROJECT: u32 = 0x2000;
pub const RO_COMPAT_SHARED_BLOCKS: u32 = 0x4000;
pub const RO_COMPAT_VERITY: u32 = 0x8000;
pub const RO_COMPAT_ORPHAN_PRESENT: u32 = 0x10000;

/// Which feature set a bit belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSet {
    Compat,
    Incompat,
    RoCompat,
}

/// Every feature we know by name, with whether growing handles it.
pub const FEATURES: &[(FeatureSet, u32, &str, bool)] = &[
    (
        FeatureSet::Compat,
        COMPAT_DIR_PREALLOC,
        "dir_prealloc",
        true,
    ),
    (
        FeatureSet::Compat,
        COMPAT_IMAGIC_INODES,
        "imagic_inodes",
        true,
    ),
    (FeatureSet::Compat, COMPAT_HAS_JOURNAL, "has_journal", true),
    (FeatureSet::Compat, COMPAT_EXT_ATTR, "ext_attr", true),
    (
        FeatureSet::Compat,
        COMPAT_RESIZE_INODE,
        "resize_inode",
        true,
    ),
    (FeatureSet::Compat, COMPAT_DIR_INDEX, "dir_index", true),
    (FeatureSet::Compat, COMPAT_LAZY_BG, "lazy_bg", false),
    (
        FeatureSet::Compat,
        COMPAT_EXCLUDE_BITMAP,
        "exclude_bitmap",
        false,
    ),
    (
        FeatureSet::Compat,
        COMPAT_SPARSE_SUPER2,
        "sparse_super2",
        false,
    ),
    (FeatureSet::Compat, COMPAT_FAST_COMMIT, "fast_commit", true),
    (
        FeatureSet::Compat,
        COMPAT_STABLE_INODES,
        "stable_inodes",
        true,
    ),
    (FeatureSet::Compat, COMPAT_ORPHAN_FILE, "orphan_file", true),
    (
        FeatureSet::Incompat,
        INCOMPAT_COMPRESSION,
        "compression",
        false,
    ),
    (FeatureSet::Incompat, INCOMPAT_FILETYPE, "filetype", true),
    (
        FeatureSet::Incompat,
        INCOMPAT_RECOVER,
        "needs_recovery",
        true,
    ),
    (
        FeatureSet::Incompat,
        INCOMPAT_JOURNAL_DEV,
        "journal_dev",
        false,
    ),
    (FeatureSet::Incompat, INCOMPAT_META_BG, "meta_bg", true),
    (FeatureSet::Incompat, INCOMPAT_EXTENTS, "extent", true),
    (FeatureSet::Incompat, INCOMPAT_64BIT, "64bit", true),
    (FeatureSet::Incompat, INCOMPAT_MMP, "mmp", false),
    (FeatureSet::Incompat, INCOMPAT_FLEX_BG, "flex_bg", true),
    (FeatureSet::Incompat, INCOMPAT_EA_INODE, "ea_inode", true),
    (FeatureSet::Incompat, INCOMPAT_DIRDATA, "dirdata", false),
    (
        FeatureSet::Incompat,
        INCOMPAT_CSUM_SEED,
        "metadata_csum_seed",
        true,
    ),
    (FeatureSet::Incompat, INCOMPAT_LARGEDIR, "large_dir", true),
    (
        FeatureSet::Incompat,
        INCOMPAT_INLINE_DATA,
        "inline_data",
        true,
    ),
    (FeatureSet::Incompat, INCOMPAT_ENCRYPT, "encrypt", true),
    (FeatureSet::Incompat, INCOMPAT_CASEFOLD, "casefold", true),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_SPARSE_SUPER,
        "sparse_super",
        true,
    ),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_LARGE_FILE,
        "large_file",
        true,
    ),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_BTREE_DIR,
        "btree_dir",
        false,
    ),
    (FeatureSet::RoCompat, RO_COMPAT_HUGE_FILE, "huge_file", true),
    (FeatureSet::RoCompat, RO_COMPAT_GDT_CSUM, "uninit_bg", true),
    (FeatureSet::RoCompat, RO_COMPAT_DIR_NLINK, "dir_nlink", true),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_EXTRA_ISIZE,
        "extra_isize",
        true,
    ),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_HAS_SNAPSHOT,
        "snapshot",
        false,
    ),
    (FeatureSet::RoCompat, RO_COMPAT_QUOTA, "quota", true),
    (FeatureSet::RoCompat, RO_COMPAT_BIGALLOC, "bigalloc", false),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_METADATA_CSUM,
        "metadata_csum",
        true,
    ),
    (FeatureSet::RoCompat, RO_COMPAT_REPLICA, "replica", false),
    (FeatureSet::RoCompat, RO_COMPAT_READONLY, "read-only", false),
    (FeatureSet::RoCompat, RO_COMPAT_PROJECT, "project", true),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_SHARED_BLOCKS,
        "shared_blocks",
        false,
    ),
    (FeatureSet::RoCompat, RO_COMPAT_VERITY, "verity", true),
    (
        FeatureSet::RoCompat,
        RO_COMPAT_ORPHAN_PRESENT,
        "orphan_present",
        true,
    ),
];

fn le16(raw: &[u8; SUPERBLOCK_SIZE], offset: usize) -> u16 {
    let mut b = [0u8; 2];
    b.copy_from_slice(&raw[offset..offset + 2]);
    u16::from_le_bytes(b)
}

fn le32(raw: &[u8; SUPERBLOCK_SIZE], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&raw[offset..offset + 4]);
    u32::from_le_bytes(b)
}

fn put16(raw: &mut [u8; SUPERBLOCK_SIZE], offset: usize, value: u16) {
    raw[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put32(raw: &mut [u8; SUPERBLOCK_SIZE], offset: usize, value: u32) {
    raw[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn lo32(value: u64) -> u32 {
    u32::try_from(value & u64::from(u32::MAX)).unwrap_or(u32::MAX)
}

fn hi32(value: u64) -> u32 {
    u32::try_from(value >> 32).unwrap_or(u32::MAX)
}

/// The superblock fields this crate reads or changes, plus the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    raw: [u8; SUPERBLOCK_SIZE],
    pub inodes_count: u32,
    pub blocks_count: u64,
    pub r_blocks_count: u64,
    pub free_blocks_count: u64,
    pub free_inodes_count: u32,
    pub first_data_block: u32,
    pub log_block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub mtime: u32,
    pub state: u16,
    pub lastcheck: u32,
    pub rev_level: u32,
    pub first_ino: u32,
    pub inode_size: u16,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub uuid: [u8; 16],
    pub reserved_gdt_blocks: u16,
    pub last_orphan: u32,
    /// Descriptor size in bytes, 32 unless the 64bit feature is on.
    pub desc_size: u32,
    pub first_meta_bg: u32,
    pub log_groups_per_flex: u8,
    pub overhead_clusters: u32,
    pub checksum_seed: u32,
}

impl Superblock {
    /// Parses and validates the 1024 superblock bytes found at byte
    /// `offset` of the device (used in error messages only).
    pub fn parse(bytes: &[u8], offset: u64) -> Result<Superblock, FsError> {
        let raw: [u8; SUPERBLOCK_SIZE] = bytes
            .get(..SUPERBLOCK_SIZE)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                FsError::corrupt("superblock", "length", offset, bytes.len(), SUPERBLOCK_SIZE)
            })?;
        let at = |field: usize| offset + field as u64;
        let magic = le16(&raw, S_MAGIC);
        if magic != EXT_MAGIC {
            return Err(FsError::corrupt(
                "superblock",
                "s_magic",
                at(S_MAGIC),
                format!("{magic:#06x}"),
                format!("{EXT_MAGIC:#06x}"),
            ));
        }
        let feature_incompat = le32(&raw, S_FEATURE_INCOMPAT);
        let feature_ro_compat = le32(&raw, S_FEATURE_RO_COMPAT);
        let is_64bit = feature_incompat & INCOMPAT_64BIT != 0;
        let hi = |field: usize| if is_64bit { le32(&raw, field) } else { 0 };
        let join = |lo: u32, hi: u32| (u64::from(hi) << 32) | u64::from(lo);
        let rev_level = le32(&raw, S_REV_LEVEL);
        let (inode_size, first_ino) = if rev_level >= DYNAMIC_REV {
            (le16(&raw, S_INODE_SIZE), le32(&raw, S_FIRST_INO))
        } else {
            (GOOD_OLD_INODE_SIZE, GOOD_OLD_FIRST_INO)
        };
        let desc_size = if is_64bit {
            u32::from(le16(&raw, S_DESC_SIZE))
        } else {
            DESC_SIZE_32
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&raw[S_UUID..S_UUID + 16]);
        let sb = Superblock {
            inodes_count: le32(&raw, S_INODES_COUNT),
            blocks_count: join(le32(&raw, S_BLOCKS_COUNT_LO), hi(S_BLOCKS_COUNT_HI)),
            r_blocks_count: join(le32(&raw, S_R_BLOCKS_COUNT_LO), hi(S_R_BLOCKS_COUNT_HI)),
            free_blocks_count: join(
                le32(&raw, S_FREE_BLOCKS_COUNT_LO),
                hi(S_FREE_BLOCKS_COUNT_HI),
            ),
            free_inodes_count: le32(&raw, S_FREE_INODES_COUNT),
            first_data_block: le32(&raw, S_FIRST_DATA_BLOCK),
            log_block_size: le32(&raw, S_LOG_BLOCK_SIZE),
            blocks_per_group: le32(&raw, S_BLOCKS_PER_GROUP),
            inodes_per_group: le32(&raw, S_INODES_PER_GROUP),
            mtime: le32(&raw, S_MTIME),
            state: le16(&raw, S_STATE),
            lastcheck: le32(&raw, S_LASTCHECK),
            rev_level,
            first_ino,
            inode_size,
            feature_compat: le32(&raw, S_FEATURE_COMPAT),
            feature_incompat,
            feature_ro_compat,
            uuid,
            reserved_gdt_blocks: le16(&raw, S_RESERVED_GDT_BLOCKS),
            last_orphan: le32(&raw, S_LAST_ORPHAN),
            desc_size,
            first_meta_bg: le32(&raw, S_FIRST_META_BG),
            log_groups_per_flex: raw[S_LOG_GROUPS_PER_FLEX],
            overhead_clusters: le32(&raw, S_OVERHEAD_CLUSTERS),
            checksum_seed: le32(&raw, S_CHECKSUM_SEED),
            raw,
        };
        sb.validate(offset)?;
        Ok(sb)
    }

    /// The rules a superblock must pass before any geometry is derived
    /// from it; each names its field and both values.
    fn validate(&self, offset: u64) -> Result<(), FsError> {
        self.validate_checksum(offset)?;
        self.validate_geometry(offset)?;
        self.validate_counts(offset)
    }

    /// `s_checksum_type` and `s_checksum` (metadata_csum only).
    fn validate_checksum(&self, offset: u64) -> Result<(), FsError> {
        let at = |field: usize| offset + field as u64;
        let fail = |field: &'static str, off: usize, found: String, expected: &str| {
            Err(FsError::corrupt(
                "superblock",
                field,
                at(off),
                found,
                expected,
            ))
        };
        if self.metadata_csum() {
            let kind = self.raw[S_CHECKSUM_TYPE];
            if kind != CHECKSUM_TYPE_CRC32C {
                return fail(
                    "s_checksum_type",
                    S_CHECKSUM_TYPE,
                    kind.to_string(),
                    "1 (crc32c)",
                );
            }
            let stored = le32(&self.raw, S_CHECKSUM);
            let computed = Self::checksum_of(&self.raw);
            if stored != computed {
                return fail(
                    "s_checksum",
                    S_CHECKSUM,
                    format!("{stored:#010x}"),
                    &format!("{computed:#010x} (computed)"),
                );
            }
        }
        Ok(())
    }

    /// Block size, first data block, group sizes, inode and descriptor sizes.
    fn validate_geometry(&self, offset: u64) -> Result<(), FsError> {
        let at = |field: usize| offset + field as u64;
        let fail = |field: &'static str, off: usize, found: String, expected: &str| {
            Err(FsError::corrupt(
                "superblock",
                field,
                at(off),
                found,
                expected,
            ))
        };
        if self.log_block_size > MAX_LOG_BLOCK_SIZE {
            return fail(
                "s_log_block_size",
                S_LOG_BLOCK_SIZE,
                self.log_block_size.to_string(),
                "0..=6",
            );
        }
        let block_size = self.block_size();
        let expected_first = u32::from(block_size == MIN_BLOCK_SIZE);
        if self.first_data_block != expected_first
            && self.feature_ro_compat & RO_COMPAT_BIGALLOC == 0
        {
            return fail(
                "s_first_data_block",
                S_FIRST_DATA_BLOCK,
                self.first_data_block.to_string(),
                &expected_first.to_string(),
            );
        }
        let max_per_group = block_size.saturating_mul(8);
        // With bigalloc a group spans clusters, not blocks.
        let cluster_shift = if self.has_ro_compat(RO_COMPAT_BIGALLOC) {
            self.log_cluster_size()
                .saturating_sub(self.log_block_size)
                .min(16)
        } else {
            0
        };
        let max_blocks_per_group = max_per_group.saturating_mul(1 << cluster_shift);
        if self.blocks_per_group == 0
            || self.blocks_per_group > max_blocks_per_group
            || self.blocks_per_group % 8 != 0
        {
            return fail(
                "s_blocks_per_group",
                S_BLOCKS_PER_GROUP,
                self.blocks_per_group.to_string(),
                &format!("a multiple of 8 in 8..={max_blocks_per_group}"),
            );
        }
        if self.inodes_per_group == 0
            || self.inodes_per_group > max_per_group
            || self.inodes_per_group % 8 != 0
        {
            return fail(
                "s_inodes_per_group",
                S_INODES_PER_GROUP,
                self.inodes_per_group.to_string(),
                &format!("a multiple of 8 in 8..={max_per_group}"),
            );
        }
        let inode_size = u32::from(self.inode_size);
        if inode_size < u32::from(GOOD_OLD_INODE_SIZE)
            || !inode_size.is_power_of_two()
            || inode_size > block_size
        {
            return fail(
                "s_inode_size",
                S_INODE_SIZE,
                inode_size.to_string(),
                &format!("a power of two in 128..={block_size}"),
            );
        }
        if self.feature_incompat & INCOMPAT_64BIT != 0
            && (self.desc_size < DESC_SIZE_64
                || !self.desc_size.is_power_of_two()
                || self.desc_size > block_size)
        {
            return fail(
                "s_desc_size",
                S_DESC_SIZE,
                self.desc_size.to_string(),
                "a power of two of at least 64 (64bit is set)",
            );
        }
        Ok(())
    }

    /// Block and inode counts against the geometry.
    fn validate_counts(&self, offset: u64) -> Result<(), FsError> {
        let at = |field: usize| offset + field as u64;
        let fail = |field: &'static str, off: usize, found: String, expected: &str| {
            Err(FsError::corrupt(
                "superblock",
                field,
                at(off),
                found,
                expected,
            ))
        };
        if self.blocks_count <= u64::from(self.first_data_block) {
            return fail(
                "s_blocks_count",
                S_BLOCKS_COUNT_LO,
                self.blocks_count.to_string(),
                &format!("more than s_first_data_block ({})", self.first_data_block),
            );
        }
        let groups = self.group_count_for(self.blocks_count);
        let expected_inodes = groups.checked_mul(u64::from(self.inodes_per_group));
        if expected_inodes != Some(u64::from(self.inodes_count)) {
            return fail(
                "s_inodes_count",
                S_INODES_COUNT,
                self.inodes_count.to_string(),
                &format!(
                    "{groups} groups x {} inodes per group",
                    self.inodes_per_group
                ),
            );
        }
        if self.free_blocks_count > self.blocks_count {
            return Err(FsError::NeedsFsck {
                reason: format!(
                    "s_free_blocks_count {} exceeds s_blocks_count {}",
                    self.free_blocks_count, self.blocks_count
                ),
            });
        }
        if self.free_inodes_count > self.inodes_count {
            return Err(FsError::NeedsFsck {
                reason: format!(
                    "s_free_inodes_count {} exceeds s_inodes_count {}",
                    self.free_inodes_count, self.inodes_count
                ),
            });
        }
        Ok(())
    }

    /// The raw superblock checksum: CRC32C seeded with `!0` over every
    /// byte before `s_checksum`.
    fn checksum_of(raw: &[u8; SUPERBLOCK_SIZE]) -> u32 {
        crc32c_raw(!0, &raw[..S_CHECKSUM])
    }

    pub fn block_size(&self) -> u32 {
        MIN_BLOCK_SIZE << self.log_block_size.min(MAX_LOG_BLOCK_SIZE)
    }

    /// Number of groups a filesystem of `blocks_count` blocks has.
    pub fn group_count_for(&self, blocks_count: u64) -> u64 {
        blocks_count
            .saturating_sub(u64::from(self.first_data_block))
            .div_ceil(u64::from(self.blocks_per_group.max(1)))
    }

    pub fn has_compat(&self, bit: u32) -> bool {
        self.feature_compat & bit != 0
    }
    pub fn has_incompat(&self, bit: u32) -> bool {
        self.feature_incompat & bit != 0
    }
    pub fn has_ro_compat(&self, bit: u32) -> bool {
        self.feature_ro_compat & bit != 0
    }
    pub fn metadata_csum(&self) -> bool {
        self.has_ro_compat(RO_COMPAT_METADATA_CSUM)
    }
    /// Group descriptors carry a checksum (and may use the UNINIT flags).
    pub fn group_desc_csum(&self) -> bool {
        self.metadata_csum() || self.has_ro_compat(RO_COMPAT_GDT_CSUM)
    }

    /// The seed of every metadata_csum checksum but the superblock's own.
    pub fn csum_seed(&self) -> u32 {
        if self.has_incompat(INCOMPAT_CSUM_SEED) {
            self.checksum_seed
        } else {
            crc32c_raw(!0, &self.uuid)
        }
    }

    /// The names of the features set, in on-disk bit order; unknown bits
    /// as `compat:0x...`.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (set, word) in [
            (FeatureSet::Compat, self.feature_compat),
            (FeatureSet::Incompat, self.feature_incompat),
            (FeatureSet::RoCompat, self.feature_ro_compat),
        ] {
            for bit in (0..32).map(|n| 1u32 << n).filter(|b| word & b != 0) {
                match FEATURES.iter().find(|f| f.0 == set && f.1 == bit) {
                    Some(f) => names.push(f.2.to_string()),
                    None => names.push(format!("{set:?}:{bit:#x}").to_lowercase()),
                }
            }
        }
        names
    }

    /// Serializes the fields this crate changes over the original bytes,
    /// with `s_block_group_nr` = `group_nr`, and sets the checksum.
    pub fn to_bytes(&self, group_nr: u16) -> [u8; SUPERBLOCK_SIZE] {
        let mut raw = self.raw;
        let is_64bit = self.has_incompat(INCOMPAT_64BIT);
        put32(&mut raw, S_INODES_COUNT, self.inodes_count);
        put32(&mut raw, S_BLOCKS_COUNT_LO, lo32(self.blocks_count));
        put32(&mut raw, S_R_BLOCKS_COUNT_LO, lo32(self.r_blocks_count));
        put32(
            &mut raw,
            S_FREE_BLOCKS_COUNT_LO,
            lo32(self.free_blocks_count),
        );
        if is_64bit {
            put32(&mut raw, S_BLOCKS_COUNT_HI, hi32(self.blocks_count));
            put32(&mut raw, S_R_BLOCKS_COUNT_HI, hi32(self.r_blocks_count));
            put32(
                &mut raw,
                S_FREE_BLOCKS_COUNT_HI,
                hi32(self.free_blocks_count),
            );
        }
        put32(&mut raw, S_FREE_INODES_COUNT, self.free_inodes_count);
        put16(&mut raw, S_STATE, self.state);
        put32(&mut raw, S_FEATURE_COMPAT, self.feature_compat);
        put32(&mut raw, S_FEATURE_INCOMPAT, self.feature_incompat);
        put32(&mut raw, S_FEATURE_RO_COMPAT, self.feature_ro_compat);
        put16(&mut raw, S_RESERVED_GDT_BLOCKS, self.reserved_gdt_blocks);
        put32(&mut raw, S_FIRST_META_BG, self.first_meta_bg);
        put32(&mut raw, S_OVERHEAD_CLUSTERS, self.overhead_clusters);
        put16(&mut raw, S_BLOCK_GROUP_NR, group_nr);
        if self.metadata_csum() {
            let sum = Self::checksum_of(&raw);
            put32(&mut raw, S_CHECKSUM, sum);
        }
        raw
    }

    /// `s_log_cluster_size`, to refuse bigalloc geometries early.
    pub fn log_cluster_size(&self) -> u32 {
        le32(&self.raw, S_LOG_CLUSTER_SIZE)
    }

    /// `s_clusters_per_group`.
    pub fn clusters_per_group(&self) -> u32 {
        le32(&self.raw, S_CLUSTERS_PER_GROUP)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A golden superblock: 1 KiB blocks, 8192 blocks per group, 4 groups,
    /// ext4 features with metadata_csum and 64bit; checksum set.
    pub fn golden() -> [u8; SUPERBLOCK_SIZE] {
        let mut raw = [0u8; SUPERBLOCK_SIZE];
        put32(&mut raw, S_INODES_COUNT, 4 * 2048);
        put32(&mut raw, S_BLOCKS_COUNT_LO, 32768);
        put32(&mut raw, S_R_BLOCKS_COUNT_LO, 1638);
        put32(&mut raw, S_FREE_BLOCKS_COUNT_LO, 20000);
        put32(&mut raw, S_FREE_INODES_COUNT, 8000);
        put32(&mut raw, S_FIRST_DATA_BLOCK, 1);
        put32(&mut raw, S_BLOCKS_PER_GROUP, 8192);
        put32(&mut raw, S_CLUSTERS_PER_GROUP, 8192);
        put32(&mut raw, S_INODES_PER_GROUP, 2048);
        put16(&mut raw, S_MAGIC, EXT_MAGIC);
        put16(&mut raw, S_STATE, STATE_VALID_FS);
        put32(&mut raw, S_REV_LEVEL, 1);
        put32(&mut raw, S_FIRST_INO, 11);
        put16(&mut raw, S_INODE_SIZE, 256);
        put32(
            &mut raw,
            S_FEATURE_COMPAT,
            COMPAT_HAS_JOURNAL | COMPAT_RESIZE_INODE,
        );
        put32(
            &mut raw,
            S_FEATURE_INCOMPAT,
            INCOMPAT_FILETYPE | INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG,
        );
        put32(
            &mut raw,
            S_FEATURE_RO_COMPAT,
            RO_COMPAT_SPARSE_SUPER | RO_COMPAT_METADATA_CSUM,
        );
        raw[S_UUID..S_UUID + 16].copy_from_slice(&[0x11; 16]);
        put16(&mut raw, S_RESERVED_GDT_BLOCKS, 256);
        put16(&mut raw, S_DESC_SIZE, 64);
        raw[S_LOG_GROUPS_PER_FLEX] = 4;
        raw[S_CHECKSUM_TYPE] = CHECKSUM_TYPE_CRC32C;
        reseal(&mut raw);
        raw
    }

    pub fn reseal(raw: &mut [u8; SUPERBLOCK_SIZE]) {
        let sum = Superblock::checksum_of(raw);
        put32(raw, S_CHECKSUM, sum);
    }

    #[test]
    fn golden_parses() {
        let sb = Superblock::parse(&golden(), SUPERBLOCK_OFFSET).unwrap();
        assert_eq!(sb.block_size(), 1024);
        assert_eq!(sb.blocks_count, 32768);
        assert_eq!(sb.desc_size, 64);
        assert_eq!(sb.reserved_gdt_blocks, 256);
        assert!(sb.feature_names().contains(&"metadata_csum".to_string()));
        // Serializing unchanged fields gives the same bytes back.
        assert_eq!(sb.to_bytes(0), golden());
    }

    fn corrupt_field(raw: [u8; SUPERBLOCK_SIZE]) -> (&'static str, u64, String, String) {
        match Superblock::parse(&raw, SUPERBLOCK_OFFSET) {
            Err(FsError::Corrupt {
                field,
                offset,
                found,
                expected,
                ..
            }) => (field, offset, found, expected),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn bad_magic_is_named() {
        let mut raw = golden();
        put16(&mut raw, S_MAGIC, 0x1234);
        let (field, offset, found, expected) = corrupt_field(raw);
        assert_eq!(field, "s_magic");
        assert_eq!(offset, 0x438);
        assert_eq!(found, "0x1234");
        assert_eq!(expected, "0xef53");
    }

    #[test]
    fn bad_checksum_is_named() {
        let mut raw = golden();
        put32(&mut raw, S_FREE_INODES_COUNT, 7999);
        let (field, offset, _, expected) = corrupt_field(raw);
        assert_eq!(field, "s_checksum");
        assert_eq!(offset, 0x7FC);
        assert!(expected.ends_with("(computed)"));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: [(usize, u32, &str); 5] = [
            (S_LOG_BLOCK_SIZE, 9, "s_log_block_size"),
            (S_BLOCKS_PER_GROUP, 100_000, "s_blocks_per_group"),
            (S_INODES_PER_GROUP, 0, "s_inodes_per_group"),
            (S_INODES_COUNT, 8191, "s_inodes_count"),
            (S_FIRST_DATA_BLOCK, 0, "s_first_data_block"),
        ];
        for (off, value, name) in cases {
            let mut raw = golden();
            put32(&mut raw, off, value);
            reseal(&mut raw);
            let (field, offset, found, _) = corrupt_field(raw);
            assert_eq!(field, name);
            assert_eq!(offset, SUPERBLOCK_OFFSET + off as u64);
            assert_eq!(found, value.to_string());
        }
        let mut raw = golden();
        put16(&mut raw, S_INODE_SIZE, 200);
        reseal(&mut raw);
        assert_eq!(corrupt_field(raw).0, "s_inode_size");
        let mut raw = golden();
        put16(&mut raw, S_DESC_SIZE, 32);
        reseal(&mut raw);
        assert_eq!(corrupt_field(raw).0, "s_desc_size");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1100)) {
            let _ = Superblock::parse(&bytes, SUPERBLOCK_OFFSET);
        }

        #[test]
        fn any_one_byte_change_parses_or_errs(at in 0usize..SUPERBLOCK_SIZE, value in proptest::num::u8::ANY) {
            let mut raw = golden();
            raw[at] = value;
            reseal(&mut raw);
            if let Ok(sb) = Superblock::parse(&raw, SUPERBLOCK_OFFSET) {
                // What parses also serializes back to the same bytes
                // (`s_block_group_nr` is the caller's to give).
                let group_nr = le16(&raw, S_BLOCK_GROUP_NR);
                proptest::prop_assert_eq!(sb.to_bytes(group_nr).to_vec(), raw.to_vec());
            }
        }
    }

    #[test]
    fn short_input_is_corrupt_not_a_panic() {
        let (field, ..) = match Superblock::parse(&[0u8; 100], 0) {
            Err(FsError::Corrupt { field, .. }) => (field, ()),
            other => panic!("{other:?}"),
        };
        assert_eq!(field, "length");
    }
}
