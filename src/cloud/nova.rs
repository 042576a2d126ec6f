//! Nova's `auto_disk_config`, as policy: what the XenAPI driver decides
//! about a disk it is asked to resize ([`Verdict`]), the report of a
//! simulated resize ([`ExpandReport`], built by [`crate::grow`]), and the
//! refusal text. Pure: no I/O.
//!
//! The partition preconditions Nova checks (one partition, numbered 1) are
//! the partition grower's own preconditions too, so their checks and Nova's
//! wording stay in [`crate::partition`] ([`crate::partition::NovaRefusal`]);
//! the filesystem rule (ext3/ext4 only) and the verdict are here.

use std::path::PathBuf;

use serde::Serialize;

use crate::fs::detect::FsKind;
use crate::partition::{NovaRefusal, PartitionInfo, TableKind};

/// What Nova's XenAPI driver would do, and what vhdkit did.
#[derive(Debug, Clone, Serialize)]
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
    pub notes: Vec<String>,
}

/// A filesystem before and after.
#[derive(Debug, Clone, Serialize)]
pub struct FsGrowth {
    /// ext2, ext3, ext4, fat12, fat16, fat32, or a name Nova would show.
    pub kind: String,
    /// Where it starts on the disk, in bytes.
    pub offset_bytes: u64,
    pub size_before_bytes: u64,
    pub size_after_bytes: u64,
    /// The filesystem's own report (counts before and after), as JSON.
    pub detail: serde_json::Value,
}

/// The result of planning (and, unless a dry run, writing) an expansion.
#[derive(Debug, Clone, Serialize)]
pub struct ExpandReport {
    #[serde(serialize_with = "crate::format::path_json::path")]
    pub input: PathBuf,
    #[serde(serialize_with = "crate::format::path_json::option")]
    pub output: Option<PathBuf>,
    pub old_size: u64,
    pub new_size: u64,
    pub table_kind: TableKind,
    pub partitions_before: Vec<PartitionInfo>,
    pub partitions_after: Vec<PartitionInfo>,
    pub filesystem: Option<FsGrowth>,
    /// Byte ranges of the disk that change (offset, length).
    pub changed: Vec<(u64, u64)>,
    pub changed_bytes: u64,
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
