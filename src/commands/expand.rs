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

use crate::convert::{self, ConvertOptions};
use crate::disk::device::{Device, SliceDevice};
use crate::disk::overlay::Overlay;
use crate::disk::{self, Block, Kind, Source, VirtualDisk};
use crate::format::header::encode_utf16le;
use crate::format::{DiskType, DynamicHeader, Footer, Layout, ParentLocator, PlatformCode};
use crate::fs::detect::{detect, FsKind};
use crate::partition::{self, GrowRule, NovaRefusal, PartitionInfo, TableKind};
use crate::pipeline::plan::{self as pplan, StoredBlock};
use crate::pipeline::{self, DataSource, Progress};
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
    convert::require_clean(input)?;
    let base = disk::open(input)?;
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
    convert::require_clean(input)?;
    let base = disk::open(input)?;
    let mut overlay = Overlay::new(base.as_ref(), opts.size);
    let mut report = plan_on(&mut overlay, input, opts)?;
    if !report.verdict.grown && !report.verdict.disk_only {
        return Err(Error::Refused {
            path: input.to_path_buf(),
            reason: refusal_text(&report),
        });
    }
    let written = if opts.as_child {
        write_child(&overlay, input, output, opts, progress)?
    } else {
        let copts = ConvertOptions {
            to: opts.to,
            block_size: opts.block_size,
            align: 512,
            creator: opts.creator.clone(),
            digests: Vec::new(),
        };
        convert::write_disk(&overlay, input, output, &copts, progress)?
    };
    report.output = Some(output.to_path_buf());
    report.written = Some(written);
    Ok(report)
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

fn part_err(input: &Path) -> impl Fn(partition::PartError) -> Error + '_ {
    move |e| match e {
        partition::PartError::Corrupt(f) => Error::corrupt(input, f),
        other => Error::Refused {
            path: input.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Plans on `o` (the overlay takes every change).
fn plan_on(o: &mut Overlay<'_>, input: &Path, opts: &ExpandOptions) -> Result<ExpandReport> {
    let old_size = o.base().size_bytes();
    let new_size = opts.size;
    if new_size < old_size {
        return Err(Error::Refused {
            path: input.to_path_buf(),
            reason: format!(
                "--size {new_size} bytes is smaller than the disk's {old_size} bytes: the hypervisor never shrinks a disk"
            ),
        });
    }
    if new_size % 512 != 0 {
        return Err(Error::Usage(format!(
            "--size {new_size}: expected a whole number of 512-byte sectors"
        )));
    }
    if opts.to != convert::Target::Raw && new_size > crate::format::MAX_VIRTUAL_SIZE {
        return Err(Error::Usage(format!(
            "--size {new_size}: above the VHD limit of {} bytes (2040 GiB)",
            crate::format::MAX_VIRTUAL_SIZE
        )));
    }
    let table = partition::read_table(o).map_err(part_err(input))?;
    let mut verdict = Verdict {
        nova_resizes: false,
        nova_refusal: None,
        grown: false,
        disk_only: false,
        notes: Vec::new(),
    };
    let partitions_before = table.partitions.clone();
    let mut partitions_after = table.partitions.clone();
    // The filesystem region to grow: (offset, old length, new length).
    let mut region: Option<(u64, u64, FsKind)> = None;
    if table.kind == TableKind::None {
        let kind = detect(o);
        verdict
            .notes
            .push("no partition table: the filesystem is grown directly (libvirt's case)".into());
        region = Some((0, old_size, kind));
    } else {
        let refusal = partition::nova_check_count(&table).err().or_else(|| {
            let p = &table.partitions[0];
            let kind = partition_fs(o, p);
            region = Some((p.start_lba * 512, p.size_sectors * 512, kind));
            if matches!(kind, FsKind::Ext3 | FsKind::Ext4) {
                partition::nova_check_number(&table).err()
            } else {
                Some(NovaRefusal::Filesystem {
                    filesystem: kind.parted_name().to_string(),
                })
            }
        });
        if let Some(r) = &refusal {
            verdict.nova_refusal = Some(r.server_message());
        }
        let number_ok = partition::nova_check_number(&table).is_ok()
            && partition::nova_check_count(&table).is_ok();
        if !number_ok {
            region = None;
        }
    }
    let Some((offset, _old_len, kind)) = region else {
        return finish(
            o,
            input,
            opts,
            table.kind,
            partitions_before,
            partitions_after,
            None,
            verdict,
        );
    };
    let growable = kind.is_ext() || kind.is_fat();
    if !growable {
        let what = if kind == FsKind::Unknown {
            "no filesystem vhdkit recognises".to_string()
        } else {
            format!(
                "a {} filesystem, which vhdkit cannot grow",
                kind.parted_name()
            )
        };
        verdict.notes.push(format!("the disk holds {what}"));
        return finish(
            o,
            input,
            opts,
            table.kind,
            partitions_before,
            partitions_after,
            None,
            verdict,
        );
    }
    if kind == FsKind::Ext2 || kind.is_fat() {
        verdict.notes.push(format!(
            "Nova itself grows only ext3 and ext4; vhdkit grows this {} filesystem anyway",
            kind.parted_name()
        ));
    }
    // Partition first, then the filesystem to fill it.
    let new_len = if table.kind == TableKind::None {
        new_size
    } else {
        let plan =
            partition::plan_grow_partition(o, new_size, opts.rule).map_err(part_err(input))?;
        partition::apply(o, &plan).map_err(part_err(input))?;
        verdict.notes.extend(plan.notes.iter().cloned());
        partitions_after = plan.after.partitions.clone();
        let p = &plan.after.partitions[0];
        p.size_sectors * 512
    };
    let filesystem = match grow_fs(o, input, offset, new_len, kind) {
        Ok(fs) => Some(fs),
        Err(Error::Refused { reason, .. }) => {
            // Leave the disk as it was: nothing half-grown.
            o.clear();
            verdict.notes.push(reason);
            return finish(
                o,
                input,
                opts,
                table.kind,
                partitions_before.clone(),
                partitions_before,
                None,
                verdict,
            );
        }
        Err(e) => return Err(e),
    };
    verdict.grown = true;
    verdict.nova_resizes = verdict.nova_refusal.is_none();
    finish(
        o,
        input,
        opts,
        table.kind,
        partitions_before,
        partitions_after,
        filesystem,
        verdict,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    o: &Overlay<'_>,
    input: &Path,
    opts: &ExpandOptions,
    table_kind: TableKind,
    partitions_before: Vec<PartitionInfo>,
    partitions_after: Vec<PartitionInfo>,
    filesystem: Option<FsGrowth>,
    mut verdict: Verdict,
) -> Result<ExpandReport> {
    if !verdict.grown && opts.disk_only {
        verdict.disk_only = true;
        verdict.notes.push(
            "--disk-only: only the virtual disk grows; partition and filesystem keep their size"
                .into(),
        );
    }
    let changed = o.changed_ranges();
    Ok(ExpandReport {
        input: input.to_path_buf(),
        output: None,
        old_size: o.base().size_bytes(),
        new_size: Device::size_bytes(o),
        table_kind,
        partitions_before,
        partitions_after,
        filesystem,
        changed_bytes: changed.iter().map(|c| c.1).sum(),
        changed,
        verdict,
        written: None,
    })
}

fn partition_fs(o: &Overlay<'_>, p: &PartitionInfo) -> FsKind {
    let start = p.start_lba.saturating_mul(512);
    let len = p.size_sectors.saturating_mul(512);
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

/// Grows the filesystem at `offset` to `new_len` bytes.
fn grow_fs(
    o: &mut Overlay<'_>,
    input: &Path,
    offset: u64,
    new_len: u64,
    kind: FsKind,
) -> Result<FsGrowth> {
    let refused = |what: String| Error::Refused {
        path: input.to_path_buf(),
        reason: what,
    };
    let mut dev = SliceDevice::new(o, offset, new_len)
        .map_err(|e| refused(format!("filesystem region: {e}")))?;
    match kind {
        k if k.is_fat() => {
            let plan = crate::fs::fat::plan_grow(&dev, new_len)
                .map_err(|e| refused(format!("FAT filesystem: {e}")))?;
            crate::fs::fat::apply_grow(&mut dev, &plan)
                .map_err(|e| refused(format!("FAT filesystem: {e}")))?;
            let bps = u64::from(plan.before.bytes_per_sector);
            Ok(FsGrowth {
                kind: plan.after.fat_type.to_ascii_lowercase(),
                offset_bytes: offset,
                size_before_bytes: plan.before.total_sectors * bps,
                size_after_bytes: plan.after.total_sectors * bps,
                detail: serde_json::to_value(&plan).unwrap_or_default(),
            })
        }
        k if k.is_ext() => grow_ext(&mut dev, input, offset, new_len, k),
        other => Err(refused(format!("cannot grow {}", other.parted_name()))),
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
    let refused = |e: ext::FsError| Error::Refused {
        path: input.to_path_buf(),
        reason: format!("{} filesystem at {offset:#x}: {e}", kind.parted_name()),
    };
    let plan = ext::plan_grow(dev, new_len).map_err(refused)?;
    ext::apply_grow(dev, &plan).map_err(refused)?;
    Ok(FsGrowth {
        kind: kind.parted_name().to_string(),
        offset_bytes: offset,
        size_before_bytes: plan.before.blocks_count * u64::from(plan.before.block_size),
        size_after_bytes: plan.after.blocks_count * u64::from(plan.after.block_size),
        detail: serde_json::to_value(&plan).unwrap_or_default(),
    })
}

/// A view of only the overlay's changed bytes (zeros elsewhere): the data
/// of a differencing child.
struct ChangesOnly<'a, 'b>(&'a Overlay<'b>);

impl VirtualDisk for ChangesOnly<'_, '_> {
    fn path(&self) -> &Path {
        VirtualDisk::path(self.0)
    }
    fn kind(&self) -> Kind {
        Kind::Differencing
    }
    fn size_bytes(&self) -> u64 {
        VirtualDisk::size_bytes(self.0)
    }
    fn block_size_bytes(&self) -> u64 {
        self.0.block_size_bytes()
    }
    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        Ok(Block::Owned(self.0.changes_only(offset, len)))
    }
    fn is_unallocated(&self, offset: u64, len: u64) -> bool {
        !self.0.touches(offset, len)
    }
}

/// `..\..\dir\name` from `from_dir` to `to` (both absolute), Windows style.
fn relative_windows_path(from_dir: &Path, to: &Path) -> Option<String> {
    let from: Vec<_> = from_dir.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(to_c.iter())
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    if from.len() == common {
        parts.push(".".into());
    }
    parts.extend(std::iter::repeat_n("..".to_string(), from.len() - common));
    parts.extend(
        to_c[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Some(parts.join("\\"))
}

/// Writes a differencing VHD over `input` holding only the changed sectors.
fn write_child(
    o: &Overlay<'_>,
    input: &Path,
    output: &Path,
    opts: &ExpandOptions,
    progress: &dyn Progress,
) -> Result<convert::Report> {
    let source = Source::open(input)?;
    let layout = Layout::parse(source.bytes())
        .filter(|l| l.disk_type().is_some())
        .ok_or_else(|| {
            Error::Usage(format!(
                "{}: --as-child needs a VHD input to be the parent (a raw file cannot be one)",
                input.display()
            ))
        })?;
    let parent_footer = layout.footer.clone();
    drop(source);
    let creator = crate::format::footer::Creator::by_name(&opts.creator)
        .ok_or_else(|| Error::Usage(format!("--creator {:?}: unknown", opts.creator)))?;
    convert::validate_block_size(opts.block_size)?;
    let size = VirtualDisk::size_bytes(o);
    let footer = Footer::new(
        DiskType::Differencing,
        size,
        creator,
        convert::now_vhd_timestamp(),
        *uuid::Uuid::new_v4().as_bytes(),
    );
    let abs_parent =
        std::fs::canonicalize(input).map_err(|e| Error::io(input, "resolve path", e))?;
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let abs_out_dir =
        std::fs::canonicalize(&out_dir).map_err(|e| Error::io(&out_dir, "resolve path", e))?;
    let mut header = DynamicHeader::new(0, 0, opts.block_size);
    header.parent_unique_id = parent_footer.unique_id;
    header.parent_time_stamp = parent_footer.time_stamp;
    header.set_parent_name(&abs_parent.to_string_lossy());
    let mut locators = Vec::new();
    let locator = |code: PlatformCode, data: &[u8]| {
        (
            ParentLocator {
                platform_code: code.code(),
                platform_data_space: 0,
                platform_data_length: 0,
                reserved: 0,
                platform_data_offset: 0,
            },
            data.to_vec(),
        )
    };
    if let Some(rel) = relative_windows_path(&abs_out_dir, &abs_parent) {
        locators.push(locator(PlatformCode::W2ru, &encode_utf16le(&rel)));
    }
    locators.push(locator(
        PlatformCode::W2ku,
        &encode_utf16le(&abs_parent.to_string_lossy()),
    ));
    let bs = u64::from(opts.block_size);
    let sectors = usize::try_from(bs / 512).unwrap_or(0);
    let bitmap_len =
        usize::try_from(crate::format::header::bitmap_size_bytes(opts.block_size)).unwrap_or(512);
    let mut blocks = Vec::new();
    for i in 0..size.div_ceil(bs) {
        let off = i * bs;
        let len = bs.min(size - off);
        if !o.touches(off, len) {
            continue;
        }
        let mut bitmap = vec![0u8; bitmap_len];
        for s in 0..sectors {
            let so = off + s as u64 * 512;
            if so < off + len && o.touches(so, 512) {
                bitmap[s / 8] |= 0x80 >> (s % 8);
            }
        }
        blocks.push(StoredBlock {
            block_index: i,
            source_offset: off,
            len,
            bitmap: std::sync::Arc::from(bitmap),
        });
    }
    let plan = pplan::plan_dynamic(&footer, &header, &locators, &blocks)?;
    let out = crate::output::Output::create(output, &[input])?;
    let view = ChangesOnly(o);
    let digests = pipeline::run(
        &plan,
        &DataSource::Disk(&view),
        out.file(),
        out.target(),
        &[],
        progress,
    )?;
    out.commit()?;
    Ok(convert::Report::new(
        input,
        output,
        o.base().kind(),
        "differencing",
        &plan,
        digests,
    ))
}

impl ExpandReport {
    /// The human rendering of the plan and verdict.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "disk: {} -> {} bytes", self.old_size, self.new_size);
        let table = |out: &mut String, title: &str, parts: &[PartitionInfo]| {
            let _ = writeln!(out, "{title}:");
            if parts.is_empty() {
                let _ = writeln!(out, "  (none)");
            }
            for p in parts {
                let _ = writeln!(
                    out,
                    "  {:>2}  start {:>12}  end {:>12}  sectors {:>12}  type {}{}",
                    p.number,
                    p.start_lba,
                    p.end_lba,
                    p.size_sectors,
                    p.type_id,
                    if p.bootable { "  boot" } else { "" }
                );
            }
        };
        let _ = writeln!(out, "partition table: {:?}", self.table_kind);
        table(&mut out, "partitions before", &self.partitions_before);
        table(&mut out, "partitions after", &self.partitions_after);
        if let Some(fs) = &self.filesystem {
            let _ = writeln!(
                out,
                "filesystem: {} at {:#x}: {} -> {} bytes",
                fs.kind, fs.offset_bytes, fs.size_before_bytes, fs.size_after_bytes
            );
            for side in ["before", "after"] {
                if let Some(v) = fs.detail.get(side) {
                    let _ = writeln!(out, "  {side}: {v}");
                }
            }
        }
        let _ = writeln!(
            out,
            "changed: {} bytes in {} range(s)",
            self.changed_bytes,
            self.changed.len()
        );
        for (off, len) in self.changed.iter().take(20) {
            let _ = writeln!(out, "  {off:#x} +{len}");
        }
        if self.changed.len() > 20 {
            let _ = writeln!(out, "  ... {} more", self.changed.len() - 20);
        }
        let v = &self.verdict;
        let nova = match &v.nova_refusal {
            None => "Nova would resize the partition and filesystem".to_string(),
            Some(r) => format!("Nova would refuse: {r}"),
        };
        let _ = writeln!(out, "verdict: {nova}");
        let ours = if v.grown {
            "vhdkit grew the partition and filesystem"
        } else if v.disk_only {
            "vhdkit grew only the disk (--disk-only)"
        } else {
            "vhdkit refuses (nothing written)"
        };
        let _ = writeln!(out, "         {ours}");
        for n in &v.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        if let Some(w) = &self.written {
            let _ = writeln!(
                out,
                "wrote {} ({}, {} bytes)",
                w.output.display(),
                w.output_kind,
                w.file_size
            );
        }
        out
    }
}
