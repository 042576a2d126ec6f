//! Nova's `auto_disk_config`, as policy: what the XenAPI driver decides
//! about a disk it is asked to resize ([`Verdict`]), the report of a
//! simulated resize ([`ExpandReport`], built by [`crate::grow`]), and the
//! refusal text. Pure: no I/O.
//!
//! Nova's preconditions live here with their wording ([`NovaRefusal`]):
//! one partition ([`check_count`]), an ext3/ext4 filesystem
//! ([`filesystem_check`]), numbered 1 ([`check_number`]), run in Nova's
//! order by [`preconditions_with`]. The caller ([`crate::grow`]) checks them
//! before asking [`crate::partition`] to grow partition 1.

use std::path::PathBuf;

use serde::Serialize;

use crate::fs::detect::FsKind;
use crate::partition::{PartitionInfo, Table, TableKind};

/// Nova's prefix for every refusal to resize (`CannotResizeDisk`).
pub const NOVA_REFUSAL_PREFIX: &str = "Server disk was unable to be resized because: ";

/// Why Nova would refuse to resize the disk; `Display` gives Nova's reason
/// text exactly, [`NovaRefusal::server_message`] the whole message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NovaRefusal {
    #[error("Disk must have only one partition.")]
    NotOnePartition { count: usize },
    #[error("Disk contains a filesystem we are unable to resize: {filesystem}")]
    Filesystem { filesystem: String },
    #[error("The only partition should be partition 1.")]
    NotPartitionOne { number: u32 },
}

impl NovaRefusal {
    /// The message Nova's `CannotResizeDisk` carries.
    pub fn server_message(&self) -> String {
        format!("{NOVA_REFUSAL_PREFIX}{self}")
    }
}

/// Nova's first precondition: exactly one partition (an extended
/// partition and each logical one count, as in `parted print`).
pub fn check_count(table: &Table) -> Result<(), NovaRefusal> {
    if table.partitions.len() != 1 {
        return Err(NovaRefusal::NotOnePartition {
            count: table.partitions.len(),
        });
    }
    Ok(())
}

/// Nova's third precondition: the only partition is partition 1.
pub fn check_number(table: &Table) -> Result<(), NovaRefusal> {
    match table.partitions.as_slice() {
        [p] if p.number == 1 => Ok(()),
        [p] => Err(NovaRefusal::NotPartitionOne { number: p.number }),
        ps => Err(NovaRefusal::NotOnePartition { count: ps.len() }),
    }
}

/// Nova's partition preconditions without the filesystem check: count,
/// then number. Callers that check the filesystem use
/// [`preconditions_with`] so the three run in Nova's order.
pub fn preconditions(table: &Table) -> Result<(), NovaRefusal> {
    check_count(table)?;
    check_number(table)
}

/// Nova's three preconditions in Nova's order: count, `filesystem_check`
/// (given the one partition), number.
pub fn preconditions_with(
    table: &Table,
    filesystem_check: impl FnOnce(&PartitionInfo) -> Result<(), NovaRefusal>,
) -> Result<(), NovaRefusal> {
    check_count(table)?;
    if let Some(p) = table.partitions.first() {
        filesystem_check(p)?;
    }
    check_number(table)
}

/// What Nova's XenAPI driver would do, and what vhdkit did.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Nova would resize the partition and filesystem.
    pub nova_resizes: bool,
    /// Nova's refusal, in Nova's words ("Server disk was unable to be
    /// resized because: ..."), when it would refuse.
    pub nova_refusal: Option<String>,
    /// vhdkit grew the partition and filesystem (it also grows ext2 and FAT,
    /// which Nova refuses).
    pub grown: bool,
    /// Only the virtual disk was grown (`--disk-only`).
    pub disk_only: bool,
    /// What else the user should know.
    pub notes: Vec<String>,
    /// What Nova would do, in a sentence.
    pub nova: String,
    /// What vhdkit did, or on a dry run would do, in a sentence.
    pub vhdkit: String,
}

impl Verdict {
    /// Fills the two sentences from the flags; `dry_run`: nothing was
    /// written, so vhdkit "would grow".
    pub fn word(&mut self, dry_run: bool) {
        self.nova = match (&self.nova_refusal, self.nova_resizes) {
            (Some(reason), _) => format!("Nova would refuse: {reason}"),
            (None, true) => "Nova would resize the partition and filesystem".into(),
            (None, false) => "Nova would not resize the partition and filesystem".into(),
        };
        self.vhdkit = match (self.grown, self.disk_only, dry_run) {
            (true, _, true) => {
                "vhdkit would grow the partition and filesystem (dry run: nothing written)"
            }
            (true, _, false) => "vhdkit grew the partition and filesystem",
            (false, true, true) => {
                "vhdkit would grow only the disk (--disk-only; dry run: nothing written)"
            }
            (false, true, false) => "vhdkit grew only the disk (--disk-only)",
            (false, false, _) => "vhdkit refuses (nothing written)",
        }
        .into();
    }
}

/// A filesystem's counts on one side of the growth, for a reader: for FAT a
/// block is a cluster, and groups and inodes are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FsSummary {
    /// ext2, ext3, ext4, fat12, fat16, fat32.
    pub kind: String,
    /// Bytes per block (per cluster for FAT).
    pub block_size: u64,
    pub blocks: u64,
    pub groups: Option<u64>,
    pub inodes: Option<u64>,
    /// Free blocks (clusters), when the filesystem records them.
    pub free_blocks: Option<u64>,
}

/// A filesystem before and after.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FsGrowth {
    /// ext2, ext3, ext4, fat12, fat16, fat32, or a name Nova would show.
    pub kind: String,
    /// Where it starts on the disk, in bytes.
    pub offset_bytes: u64,
    /// Its size before, in bytes.
    pub size_before_bytes: u64,
    /// Its size after, in bytes.
    pub size_after_bytes: u64,
    pub before: FsSummary,
    pub after: FsSummary,
    /// The filesystem's own report (every count before and after, the
    /// strategy), as JSON.
    pub detail: serde_json::Value,
}

/// The result of planning (and, unless a dry run, writing) an expansion.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ExpandReport {
    #[serde(serialize_with = "crate::format::path_json::path")]
    /// The image read.
    pub input: PathBuf,
    #[serde(serialize_with = "crate::format::path_json::option")]
    /// The image written (none for a plan or a refusal).
    pub output: Option<PathBuf>,
    /// The input's virtual size in bytes.
    pub old_size: u64,
    /// The output's virtual size in bytes.
    pub new_size: u64,
    /// Nothing was written (`--dry-run`, and preflight's simulations).
    pub dry_run: bool,
    /// The partition table found.
    pub table_kind: TableKind,
    /// The partitions before.
    pub partitions_before: Vec<PartitionInfo>,
    /// The partitions after.
    pub partitions_after: Vec<PartitionInfo>,
    /// The filesystem of partition 1, before and after.
    pub filesystem: Option<FsGrowth>,
    /// Byte ranges of the disk that change (offset, length).
    pub changed: Vec<(u64, u64)>,
    /// Bytes changed in all.
    pub changed_bytes: u64,
    /// What Nova would do, and what vhdkit did.
    pub verdict: Verdict,
    /// Digests and sizes of the output, when one was written.
    pub written: Option<crate::writer::Report>,
}

/// Nova's filesystem rule: it resizes only ext3 and ext4 (`Disk contains a
/// filesystem we are unable to resize: ...` otherwise).
pub fn filesystem_check(kind: FsKind) -> Result<(), NovaRefusal> {
    if matches!(kind, FsKind::Ext3 | FsKind::Ext4) {
        Ok(())
    } else {
        Err(NovaRefusal::Filesystem {
            filesystem: kind.parted_name().to_string(),
        })
    }
}

/// Why nothing can be grown, for an error message.
pub fn refusal_text(report: &ExpandReport) -> String {
    let mut parts: Vec<String> = report.verdict.nova_refusal.iter().cloned().collect();
    parts.extend(report.verdict.notes.iter().cloned());
    if parts.is_empty() {
        "nothing to grow".into()
    } else {
        format!(
            "{} (use --disk-only to grow only the disk)",
            parts.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionRole;

    fn table(numbers: &[u32]) -> Table {
        let partitions = numbers
            .iter()
            .map(|&number| PartitionInfo {
                number,
                start_lba: 2048,
                end_lba: 4095,
                size_sectors: 2048,
                type_id: "83".into(),
                bootable: false,
                name: None,
                unique_guid: None,
                attributes: None,
                role: PartitionRole::Primary,
            })
            .collect();
        Table {
            kind: TableKind::Mbr,
            sector_size: 512,
            disk_sectors: 8192,
            partitions,
            disk_id: None,
            first_usable_lba: None,
            last_usable_lba: None,
            backup_header_lba: None,
        }
    }

    #[test]
    fn refusals_carry_novas_messages() {
        let e = preconditions(&table(&[1, 2])).unwrap_err();
        assert_eq!(e, NovaRefusal::NotOnePartition { count: 2 });
        assert_eq!(
            e.server_message(),
            "Server disk was unable to be resized because: Disk must have only one partition."
        );
        let e = preconditions(&table(&[2])).unwrap_err();
        assert_eq!(e, NovaRefusal::NotPartitionOne { number: 2 });
        assert_eq!(
            e.server_message(),
            "Server disk was unable to be resized because: The only partition should be partition 1."
        );
        assert!(preconditions(&table(&[1])).is_ok());
        let fs = |_: &PartitionInfo| {
            Err(NovaRefusal::Filesystem {
                filesystem: "vfat".into(),
            })
        };
        assert_eq!(
            preconditions_with(&table(&[2]), fs)
                .unwrap_err()
                .to_string(),
            "Disk contains a filesystem we are unable to resize: vfat"
        );
        assert_eq!(
            filesystem_check(FsKind::Ext2).unwrap_err().to_string(),
            "Disk contains a filesystem we are unable to resize: ext2"
        );
        assert!(filesystem_check(FsKind::Ext4).is_ok());
    }
}
