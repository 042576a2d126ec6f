//! `expand`: what the hypervisor does to a disk at boot with
//! `auto_disk_config=True`, done to a copy.
//!
//! The input is never written: every change lands in an in-memory overlay
//! over the read-only virtual disk ([`Overlay`]). The plan (grow the disk,
//! Nova's preconditions in Nova's order, grow partition 1, grow the
//! filesystem) runs against the overlay; the output is then written by the
//! conversion pipeline from the overlay's view, or, with `--as-child`, as a
//! differencing disk holding only the changed sectors.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::partition::{GrowRule, PartitionInfo, TableKind};
use crate::{Error, Result};

/// Options of `expand`.
#[derive(Debug, Clone)]
pub struct ExpandOptions {
    /// The flavor's root disk size in bytes.
    pub size: u64,
    pub rule: GrowRule,
    /// Output format (dynamic by default).
    pub to: crate::convert::Target,
    /// Grow only the disk when the partition or filesystem cannot be grown.
    pub disk_only: bool,
    /// Write a differencing disk over the input holding only changed sectors.
    pub as_child: bool,
    pub block_size: u32,
    pub creator: String,
}

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
    pub input: PathBuf,
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
    pub written: Option<crate::convert::Report>,
}

/// Plans the expansion of `input` without writing anything (`--dry-run`).
pub fn plan_expand(input: &Path, opts: &ExpandOptions) -> Result<ExpandReport> {
    let _ = (input, opts);
    Err(Error::Usage("expand: not implemented yet".into()))
}
