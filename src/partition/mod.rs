//! Partition tables (MBR with extended/logical partitions, and GPT): read
//! them from a whole-disk `Device`, and grow partition 1 to a grown disk the
//! way Nova's XenAPI driver does for `auto_disk_config` (or the way
//! cloud-utils' `growpart` does).
//!
//! Planning is separate from writing: [`plan_grow_partition`] reads the disk
//! and returns the exact bytes to write as plain data; `apply` checks the
//! disk still holds what was planned against, writes, and reads the result
//! back. Only 512-byte sectors are supported.
//!
//! MBR and GPT are parsed by hand ([`mbr`], [`gpt`]) rather than through the
//! `mbrman` and `gpt` crates: `mbrman` leaves CHS fields stale, `gpt` 4.1
//! renumbers entries with gaps and moves the backup header only as a side
//! effect, and neither touches the protective MBR. A hand parser keeps every
//! byte we do not mean to change, and lets the plan be pure data.

mod apply;
pub mod gpt;
pub mod growpart;
pub mod mbr;
mod plan;
mod read;

pub use apply::apply;
pub use plan::plan_grow_partition;
pub use read::read_table;

use crate::format::FormatError;

/// Bytes in a sector of the disk (the VHD sector, the only size supported).
pub use crate::format::SECTOR_SIZE;
/// The same, as a length.
pub const SECTOR_BYTES: usize = SECTOR_SIZE as usize;
/// One MiB in sectors: growpart makes partition lengths whole MiB.
pub const MIB_SECTORS: u64 = 2048;
/// Sectors growpart keeps free at the end of any disk for a GPT backup
/// (header + 128-entry array), so an MBR disk can later become GPT.
pub const GROWPART_GPT_SECOND_SIZE: u64 = 33;
/// growpart caps an MBR partition's end at this sector.
pub const GROWPART_MBR_MAX_END: u64 = 1 << 32;
/// growpart leaves a partition alone unless it grows by more than this
/// many sectors (its FUDGE of 1 MiB).
pub const GROWPART_FUDGE_SECTORS: u64 = 2048;
/// Most logical partitions followed in an EBR chain (bounds the walk).
pub const MAX_LOGICAL_PARTITIONS: usize = 256;

/// Which kind of partition table the disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// An MBR (DOS) table.
    Mbr,
    /// A GUID partition table.
    Gpt,
    /// No partition table (a bare filesystem, or nothing).
    None,
}

/// What a partition is in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionRole {
    /// An MBR primary partition.
    Primary,
    /// An MBR extended partition (a container for logical ones).
    Extended,
    /// An MBR logical partition (numbered from 5).
    Logical,
    /// A GPT partition.
    Gpt,
}

/// One partition as a tool like `sfdisk --json` would show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct PartitionInfo {
    /// 1-based, as Linux numbers it (MBR logical partitions from 5; GPT:
    /// entry index + 1, gaps kept).
    pub number: u32,
    /// First sector.
    pub start_lba: u64,
    /// Inclusive.
    pub end_lba: u64,
    /// Length in sectors.
    pub size_sectors: u64,
    /// MBR: the type byte in hex as sfdisk prints it ("83"); GPT: the type
    /// GUID, upper case.
    pub type_id: String,
    /// MBR: active flag (0x80); GPT: attribute bit 2 (legacy BIOS bootable).
    pub bootable: bool,
    /// GPT partition name.
    pub name: Option<String>,
    /// GPT unique partition GUID.
    pub unique_guid: Option<String>,
    /// GPT attribute bits.
    pub attributes: Option<u64>,
    /// Primary, extended, logical or GPT.
    pub role: PartitionRole,
}

/// A partition table as read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Table {
    /// MBR, GPT, or none.
    pub kind: TableKind,
    /// Always 512.
    pub sector_size: u32,
    /// Sectors in the disk (its size in bytes / 512).
    pub disk_sectors: u64,
    /// The partitions, in table order (MBR logical ones after the primaries).
    pub partitions: Vec<PartitionInfo>,
    /// MBR disk signature ("0x1234abcd") or GPT disk GUID.
    pub disk_id: Option<String>,
    /// GPT only.
    pub first_usable_lba: Option<u64>,
    /// GPT only.
    pub last_usable_lba: Option<u64>,
    /// GPT only: where the primary header says the backup header is.
    pub backup_header_lba: Option<u64>,
}

/// Errors from reading, planning or applying: the one error of code
/// reading structures through a device.
pub type PartError = crate::disk::device::DeviceError;

fn lba_bytes(lba: u64, field: &'static str) -> Result<u64, PartError> {
    lba.checked_mul(SECTOR_SIZE).ok_or_else(|| {
        PartError::Corrupt(FormatError {
            structure: "partition table",
            field,
            offset: 0,
            found: lba.to_string(),
            expected: "an LBA whose byte offset fits 64 bits".into(),
        })
    })
}

fn entry_field_offset(base: u64, index: usize, field: usize) -> u64 {
    let at = mbr::ENTRIES_OFFSET + index * mbr::ENTRY_SIZE + field;
    base.saturating_add(u64::try_from(at).unwrap_or(0))
}

/// Where the grown partition ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum GrowRule {
    /// Nova XenAPI: same start, end at the last sector of the disk (GPT: the
    /// last usable LBA).
    Nova,
    /// cloud-utils growpart as upstream has it since mid-2026: end before
    /// the next partition, at most disk sectors − 34 (GPT: the last usable
    /// LBA), length rounded down to whole MiB; no change unless it grows by
    /// at least 1 MiB.
    Growpart,
    /// growpart 0.33 (Debian 12, Ubuntu): the same without the MiB rounding
    /// (see [`growpart`]).
    #[serde(rename = "growpart-legacy")]
    GrowpartLegacy,
}

/// The exact bytes that grow partition 1, with the tables before and after.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartGrowPlan {
    pub rule: GrowRule,
    pub before: Table,
    pub after: Table,
    /// `(byte offset, bytes)`, to be written in order. Serialized as
    /// `{offset, len}` extents.
    #[serde(serialize_with = "serialize_write_extents")]
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Whether partition 1's end moves (for GPT, the backup header may move
    /// even when it does not).
    pub partition_changed: bool,
    /// Things the caller may want to tell the user.
    pub notes: Vec<String>,
}

/// Serializes `(offset, bytes)` writes as `{offset, len}` extents (plans
/// shown as JSON need where and how much, not the bytes).
pub fn serialize_write_extents<S: serde::Serializer>(
    writes: &[(u64, Vec<u8>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(serde::Serialize)]
    struct Extent {
        offset: u64,
        len: usize,
    }
    let mut seq = serializer.serialize_seq(Some(writes.len()))?;
    for (offset, bytes) in writes {
        seq.serialize_element(&Extent {
            offset: *offset,
            len: bytes.len(),
        })?;
    }
    seq.end()
}

#[cfg(test)]
mod tests;
