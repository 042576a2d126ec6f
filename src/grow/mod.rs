//! Growing a disk as the hypervisor does at boot with
//! `auto_disk_config=True`, done to a copy: the engine of `expand`, also
//! used by `preflight` (each flavor) and `bench`.
//!
//! The input is never written: every change lands in an in-memory overlay
//! over the read-only virtual disk ([`Overlay`]). The plan (grow the disk,
//! Nova's preconditions in Nova's order, grow partition 1, grow the
//! filesystem) runs against the overlay; the output is then written by the
//! writer from the overlay's view, or, with `as_child`, as a differencing
//! disk holding only the changed sectors. What Nova decides is
//! [`crate::cloud::nova`]'s; this layer does the reading and the writing.

use std::path::Path;

use crate::cloud::nova::{self, refusal_text, ExpandReport, FsGrowth, FsSummary, Verdict};
use crate::disk;
use crate::disk::device::{Device, SliceDevice};
use crate::disk::overlay::Overlay;
use crate::format::SECTOR_SIZE;
use crate::fs::detect::{detect, FsKind};
use crate::partition::{self, GrowRule, PartitionInfo, TableKind};
use crate::pipeline::Progress;
use crate::writer::child::write_child;
use crate::writer::{require_clean, write_disk, Target, WriteOptions};
use crate::{Error, Result};

/// Options of `expand`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExpandOptions {
    /// The flavor's root disk size in bytes.
    pub size: u64,
    /// How partition 1 grows (Nova's rule by default).
    pub rule: GrowRule,
    /// Output format (dynamic by default).
    pub to: Target,
    /// Grow only the disk when the partition or filesystem cannot be grown.
    pub disk_only: bool,
    /// Write a differencing disk over the input holding only changed sectors.
    pub as_child: bool,
    /// Block size of a dynamic output (an `as_child` delta over a VHD takes its parent's).
    pub block_size: u32,
    /// Creator application of the output (see [`crate::ConvertOptions::creator`]).
    pub creator: String,
    /// Rename the output without fsync.
    pub no_sync: bool,
    /// Where the input's parents may be looked for.
    pub parents: disk::ParentOptions,
}

impl ExpandOptions {
    /// Options to grow to `size` bytes the way Nova's XenAPI driver does:
    /// partition 1 to the last sector, a dynamic output with 2 MiB blocks
    /// and the default creator, synced, parents in the input's folder only.
    pub fn new(size: u64) -> ExpandOptions {
        ExpandOptions {
            size,
            rule: GrowRule::Nova,
            to: Target::Dynamic,
            disk_only: false,
            as_child: false,
            block_size: crate::format::header::DEFAULT_BLOCK_SIZE,
            creator: crate::writer::DEFAULT_CREATOR.into(),
            no_sync: false,
            parents: disk::ParentOptions::default(),
        }
    }
}

/// Plans the expansion of `input` without writing anything (`--dry-run`).
pub fn plan_expand(input: &Path, opts: &ExpandOptions) -> Result<ExpandReport> {
    require_clean(input, &opts.parents)?;
    let base = disk::open_with(input, &opts.parents)?;
    let mut overlay = Overlay::new(base.as_ref(), opts.size);
    plan_on(&mut overlay, input, opts)
}

/// `vhdkit expand`: plans, then writes OUT (unless the plan is refused).
pub fn expand(
    input: &Path,
    output: &Path,
    opts: &ExpandOptions,
    progress: &dyn Progress,
) -> Result<ExpandReport> {
    require_clean(input, &opts.parents)?;
    let base = disk::open_with(input, &opts.parents)?;
    let mut overlay = Overlay::new(base.as_ref(), opts.size);
    let mut report = plan_on(&mut overlay, input, opts)?;
    if !report.verdict.grown && !report.verdict.disk_only {
        return Err(Error::refused(
            input,
            "EXPAND_REFUSED",
            refusal_text(&report),
        ));
    }
    let wopts = WriteOptions {
        to: opts.to,
        block_size: opts.block_size,
        align: SECTOR_SIZE,
        creator: opts.creator.clone(),
        digests: Vec::new(),
        no_sync: opts.no_sync,
    };
    let written = if opts.as_child {
        write_child(&overlay, input, output, &wopts, progress)?
    } else {
        write_disk(&overlay, input, output, &wopts, progress)?
    };
    report.output = Some(output.to_path_buf());
    report.written = Some(written);
    report.dry_run = false;
    report.verdict.word(false);
    Ok(report)
}

/// What the plan has found so far, turned into the report by [`finish`].
struct Found {
    table_kind: TableKind,
    partitions_before: Vec<PartitionInfo>,
    partitions_after: Vec<PartitionInfo>,
    filesystem: Option<FsGrowth>,
    verdict: Verdict,
}

/// Refuses what the hypervisor never does (shrink) and what no output can
/// hold.
fn check_size(old_size: u64, input: &Path, opts: &ExpandOptions) -> Result<()> {
    let new_size = opts.size;
    if new_size < old_size {
        return Err(Error::refused(
            input,
            "SHRINK",
            format!(
                "--size {new_size} bytes is smaller than the disk's {old_size} bytes: the hypervisor never shrinks a disk"
            ),
        ));
    }
    if new_size % SECTOR_SIZE != 0 {
        return Err(Error::Usage(format!(
            "--size {new_size}: expected a whole number of {SECTOR_SIZE}-byte sectors"
        )));
    }
    if opts.to != Target::Raw && new_size > crate::format::MAX_VIRTUAL_SIZE {
        return Err(Error::Usage(format!(
            "--size {new_size}: above the VHD limit of {} bytes (2040 GiB)",
            crate::format::MAX_VIRTUAL_SIZE
        )));
    }
    Ok(())
}

/// Nova's preconditions in Nova's order (count, filesystem, number); the
/// filesystem region to grow, when the partitions allow one.
fn nova_region(
    o: &Overlay<'_>,
    table: &partition::Table,
    verdict: &mut Verdict,
) -> Option<(u64, FsKind)> {
    if table.kind == TableKind::None {
        verdict
            .notes
            .push("no partition table: the filesystem is grown directly (libvirt's case)".into());
        return Some((0, detect(o)));
    }
    let mut region = None;
    let refusal = nova::preconditions_with(table, |p| {
        let kind = partition_fs(o, p);
        region = Some((p.start_lba * SECTOR_SIZE, kind));
        nova::filesystem_check(kind)
    });
    if let Err(r) = &refusal {
        verdict.nova_refusal = Some(r.server_message());
    }
    region.filter(|_| nova::preconditions(table).is_ok())
}

/// Plans on `o` (the overlay takes every change).
fn plan_on(o: &mut Overlay<'_>, input: &Path, opts: &ExpandOptions) -> Result<ExpandReport> {
    let old_size = o.base().size_bytes();
    let new_size = opts.size;
    check_size(old_size, input, opts)?;
    let table = partition::read_table(o).map_err(|e| Error::from_part(input, e))?;
    let mut found = Found {
        table_kind: table.kind,
        partitions_before: table.partitions.clone(),
        partitions_after: table.partitions.clone(),
        filesystem: None,
        verdict: Verdict {
            nova_resizes: false,
            nova_refusal: None,
            grown: false,
            disk_only: false,
            notes: Vec::new(),
            nova: String::new(),
            vhdkit: String::new(),
        },
    };
    let Some((offset, kind)) = nova_region(o, &table, &mut found.verdict) else {
        return Ok(finish(o, input, opts, found));
    };
    if !(kind.is_ext() || kind.is_fat()) {
        let what = if kind == FsKind::Unknown {
            "no filesystem vhdkit recognises".to_string()
        } else {
            format!(
                "a {} filesystem, which vhdkit cannot grow",
                kind.parted_name()
            )
        };
        found.verdict.notes.push(format!("the disk holds {what}"));
        return Ok(finish(o, input, opts, found));
    }
    if kind == FsKind::Ext2 || kind.is_fat() {
        found.verdict.notes.push(format!(
            "Nova itself grows only ext3 and ext4; vhdkit grows this {} filesystem anyway",
            kind.parted_name()
        ));
    }
    // Partition first, then the filesystem to fill it.
    let new_len = if table.kind == TableKind::None {
        new_size
    } else {
        let plan = partition::plan_grow_partition(o, new_size, opts.rule)
            .map_err(|e| Error::from_part(input, e))?;
        partition::apply(o, &plan).map_err(|e| Error::from_part(input, e))?;
        found.verdict.notes.extend(plan.notes.iter().cloned());
        found.partitions_after = plan.after.partitions.clone();
        plan.after.partitions[0].size_sectors * SECTOR_SIZE
    };
    match grow_fs(o, input, offset, new_len, kind) {
        Ok(fs) => found.filesystem = Some(fs),
        Err(Error::Refused { reason, .. }) => {
            // Leave the disk as it was: nothing half-grown.
            o.clear();
            found.verdict.notes.push(reason);
            found.partitions_after = found.partitions_before.clone();
            return Ok(finish(o, input, opts, found));
        }
        Err(e) => return Err(e),
    }
    found.verdict.grown = true;
    found.verdict.nova_resizes = found.verdict.nova_refusal.is_none();
    Ok(finish(o, input, opts, found))
}

fn finish(o: &Overlay<'_>, input: &Path, opts: &ExpandOptions, found: Found) -> ExpandReport {
    let mut verdict = found.verdict;
    if !verdict.grown && opts.disk_only {
        verdict.disk_only = true;
        verdict.notes.push(
            "--disk-only: only the virtual disk grows; partition and filesystem keep their size"
                .into(),
        );
    }
    verdict.word(true);
    let changed = o.changed_ranges();
    ExpandReport {
        dry_run: true,
        input: input.to_path_buf(),
        output: None,
        old_size: o.base().size_bytes(),
        new_size: Device::size_bytes(o),
        table_kind: found.table_kind,
        partitions_before: found.partitions_before,
        partitions_after: found.partitions_after,
        filesystem: found.filesystem,
        changed_bytes: changed.iter().map(|c| c.1).sum(),
        changed,
        verdict,
        written: None,
    }
}

fn partition_fs(o: &Overlay<'_>, p: &PartitionInfo) -> FsKind {
    let start = p.start_lba.saturating_mul(SECTOR_SIZE);
    let len = p.size_sectors.saturating_mul(SECTOR_SIZE);
    // Reads only: a slice over a shared reference is enough.
    struct ReadSlice<'a, 'b>(&'a Overlay<'b>, u64, u64);
    impl Device for ReadSlice<'_, '_> {
        fn size_bytes(&self) -> u64 {
            self.2
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
            crate::disk::device::check_range(offset, buf.len(), self.2)?;
            Device::read_at(self.0, self.1 + offset, buf)
        }
        fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> std::io::Result<()> {
            Err(std::io::Error::other("read-only"))
        }
    }
    if start
        .checked_add(len)
        .is_none_or(|e| e > Device::size_bytes(o))
    {
        return FsKind::Unknown;
    }
    detect(&ReadSlice(o, start, len))
}

/// Grows the filesystem at `offset` to `new_len` bytes. What the
/// filesystem code cannot do is a refusal; an I/O error stays one.
fn grow_fs(
    o: &mut Overlay<'_>,
    input: &Path,
    offset: u64,
    new_len: u64,
    kind: FsKind,
) -> Result<FsGrowth> {
    let mut dev = SliceDevice::new(o, offset, new_len)
        .map_err(|e| Error::refused(input, "FILESYSTEM", format!("filesystem region: {e}")))?;
    match kind {
        k if k.is_fat() => {
            let fat = |e| Error::from_fat(input, e);
            let plan = crate::fs::fat::plan_grow(&dev, new_len).map_err(fat)?;
            crate::fs::fat::apply_grow(&mut dev, &plan).map_err(fat)?;
            let bps = u64::from(plan.before.bytes_per_sector);
            Ok(FsGrowth {
                kind: plan.after.fat_type.to_ascii_lowercase(),
                offset_bytes: offset,
                size_before_bytes: plan.before.total_sectors * bps,
                size_after_bytes: plan.after.total_sectors * bps,
                before: fat_summary(&plan.before),
                after: fat_summary(&plan.after),
                detail: serde_json::to_value(&plan).unwrap_or_default(),
            })
        }
        k if k.is_ext() => grow_ext(&mut dev, input, offset, new_len, k),
        other => Err(Error::refused(
            input,
            "FILESYSTEM",
            format!("cannot grow {}", other.parted_name()),
        )),
    }
}

fn grow_ext(
    dev: &mut dyn Device,
    input: &Path,
    offset: u64,
    new_len: u64,
    kind: FsKind,
) -> Result<FsGrowth> {
    use crate::fs::ext;
    let what = format!("{} filesystem at {offset:#x}", kind.parted_name());
    let ext_err = |e| Error::from_ext(input, &what, e);
    let plan = ext::plan_grow(dev, new_len).map_err(ext_err)?;
    ext::apply_grow(dev, &plan).map_err(ext_err)?;
    Ok(FsGrowth {
        kind: kind.parted_name().to_string(),
        offset_bytes: offset,
        size_before_bytes: plan.before.blocks_count * u64::from(plan.before.block_size),
        size_after_bytes: plan.after.blocks_count * u64::from(plan.after.block_size),
        before: ext_summary(&plan.before),
        after: ext_summary(&plan.after),
        detail: serde_json::to_value(&plan).unwrap_or_default(),
    })
}

fn ext_summary(i: &crate::fs::ext::ExtInfo) -> FsSummary {
    FsSummary {
        kind: i.kind.to_string(),
        block_size: u64::from(i.block_size),
        blocks: i.blocks_count,
        groups: Some(i.groups),
        inodes: Some(u64::from(i.inodes_count)),
        free_blocks: Some(i.free_blocks),
    }
}

fn fat_summary(i: &crate::fs::fat::FatInfo) -> FsSummary {
    FsSummary {
        kind: i.fat_type.to_ascii_lowercase(),
        block_size: u64::from(i.bytes_per_sector) * u64::from(i.sectors_per_cluster),
        blocks: u64::from(i.cluster_count),
        groups: None,
        inodes: None,
        free_blocks: i.free_clusters.map(u64::from),
    }
}
