//! `vhdkit sparsify`: a copy of a disk in which the blocks its filesystems
//! do not use read as zero, so they are left out of the output (holes, or
//! dynamic VHD blocks never allocated).
//!
//! The input is laid out by [`crate::fs::usage::map_disk`] (partitions,
//! filesystems, free space, and what is kept and why), optionally measured
//! (how many free bytes hold data), then written through `convert`'s writer
//! from a [`FreeZeroed`] view of it: used bytes are carried over as they
//! are, free bytes read as zero. No filesystem metadata changes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::disk::{self, Kind, VirtualDisk};
use crate::format::footer::Creator;
use crate::fs::usage::{survey, DiskMap, FreeZeroed, RegionState};
use crate::pipeline::plan;
use crate::pipeline::Progress;
use crate::report::{block_size_u32, written_text, Bar, Outcome, ToArg, WriteArgs};
use crate::writer::{self, Report, Target, WriteOptions};
use crate::{Error, Result};

/// Copy a disk with the blocks its filesystems do not use left out:
/// ext2/3/4, FAT12/16/32, NTFS and swap read natively, offline.
///
/// Used bytes are carried over byte for byte; free ones read as zero and
/// are not stored. Dirty, unknown or unreadable filesystems are kept as
/// they are, and the report says why. Exit status: 0 written (or
/// reported), 1 a damaged VHD input refused, 2 could not run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// Input: raw or any VHD (a chain is read through; read only).
    pub input: PathBuf,
    /// Output image (not needed with --dry-run).
    pub output: Option<PathBuf>,
    /// Output format.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "dynamic"))]
    pub to: ToArg,
    /// Block size of a dynamic output (K/M suffixes).
    #[cfg_attr(feature = "cli", arg(long, default_value = "2M", value_parser = crate::report::parse_size_arg))]
    pub block_size: u64,
    /// Print the report (with the planned output size); write nothing.
    #[cfg_attr(feature = "cli", arg(long))]
    pub dry_run: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub write: WriteArgs,
}

/// Options of `sparsify`: how the output is written.
pub type SparsifyOptions = WriteOptions;

/// `vhdkit sparsify`.
pub fn run(args: Args) -> Result<Outcome> {
    let opts = SparsifyOptions {
        to: args.to.into(),
        block_size: block_size_u32(args.block_size)?,
        digests: args.write.digests(),
        no_sync: args.write.no_sync,
        ..SparsifyOptions::default()
    };
    let output = match (args.dry_run, args.output) {
        (true, _) => None,
        (false, Some(o)) => Some(o),
        (false, None) => {
            return Err(Error::Usage(
                "sparsify: OUTPUT is required unless --dry-run".into(),
            ))
        }
    };
    let bar = Bar::for_file(&args.input, args.write.out.quiet);
    let r = sparsify(&args.input, output.as_deref(), &opts, &bar);
    drop(bar);
    Outcome::ok(&r?, SparsifyReport::to_text)
}

/// What `sparsify` found and did.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct SparsifyReport {
    /// The image read.
    pub input: PathBuf,
    /// The image written (none for a dry run).
    pub output: Option<PathBuf>,
    /// Nothing was written.
    pub dry_run: bool,
    /// What the input is.
    pub input_kind: Kind,
    /// What the output is.
    pub output_kind: Target,
    /// The virtual size in bytes (the same in and out).
    pub virtual_size: u64,
    /// The disk laid out: `table` and `regions`.
    pub map: DiskMap,
    /// Bytes the filesystems and the table leave free.
    pub free_bytes: u64,
    /// Free bytes that held data in the input and read as zero in the output.
    pub dropped_bytes: u64,
    /// The input file's length.
    pub input_file_size: u64,
    /// The input's allocated bytes on its filesystem (a chain: every link).
    pub allocated_before: u64,
    /// The output's size (planned, with --dry-run).
    pub output_file_size: u64,
    /// The output's allocated bytes (with --dry-run: the planned data bytes,
    /// an upper bound).
    pub allocated_after: u64,
    /// Time taken.
    pub seconds: f64,
    /// What the writer reports (not with --dry-run).
    pub written: Option<Report>,
}

/// Bytes a file takes on its filesystem.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

fn chain_allocated(disk: &dyn VirtualDisk) -> u64 {
    let mut total = allocated(disk.path());
    let mut link = disk.parent();
    while let Some(p) = link {
        total += allocated(p.path());
        link = p.parent();
    }
    total
}

/// `(file size, allocated bytes)` the output would have.
fn predict(view: &dyn VirtualDisk, opts: &SparsifyOptions) -> Result<(u64, u64)> {
    let size = view.size_bytes();
    match opts.to {
        Target::Dynamic => {
            writer::validate_block_size(opts.block_size)?;
            let blocks = writer::stored_blocks(view, size, opts.block_size)?;
            let footer = crate::format::Footer::new(
                crate::format::DiskType::Dynamic,
                size,
                Creator::by_name(&opts.creator)
                    .ok_or_else(|| Error::Usage("no default creator".into()))?,
                0,
                [0; 16],
            );
            let header = crate::format::DynamicHeader::new(0, 0, opts.block_size);
            let p = plan::plan_dynamic(&footer, &header, &[], &blocks)?;
            Ok((p.file_size, p.file_size))
        }
        Target::Raw | Target::Fixed => {
            let bs = crate::disk::flat::FLAT_BLOCK_SIZE;
            let classes = plan::classify(view, size, bs)?;
            let data: u64 = classes.iter().filter(|&&d| d).count() as u64 * bs;
            let footer = u64::from(opts.to == Target::Fixed) * 512;
            Ok((size + footer, data.min(size) + footer))
        }
    }
}

/// `vhdkit sparsify`: writes `input` to `output` with the free bytes of
/// its filesystems as zeros, or with `output` `None` only reports.
pub fn sparsify(
    input: &Path,
    output: Option<&Path>,
    opts: &SparsifyOptions,
    progress: &dyn Progress,
) -> Result<SparsifyReport> {
    let started = Instant::now();
    writer::require_clean(input, &crate::disk::ParentOptions::default())?;
    let disk = disk::open(input)?;
    let map = survey(disk.as_ref()).map_err(|e| Error::Unsupported {
        path: input.to_path_buf(),
        what: format!("reading free space: {e}"),
    })?;
    let view = FreeZeroed::new(disk.as_ref(), &map);
    let (output_file_size, allocated_after, written) = match output {
        None => {
            let (size, alloc) = predict(&view, opts)?;
            (size, alloc, None)
        }
        Some(out) => {
            let r = writer::write_disk(&view, input, out, opts, progress)?;
            (r.file_size, allocated(out), Some(r))
        }
    };
    Ok(SparsifyReport {
        input: input.to_path_buf(),
        output: output.map(Path::to_path_buf),
        dry_run: output.is_none(),
        input_kind: disk.kind(),
        output_kind: opts.to,
        virtual_size: disk.size_bytes(),
        free_bytes: map.free_bytes(),
        dropped_bytes: map.dropped_bytes(),
        input_file_size: std::fs::metadata(input).map_or(0, |m| m.len()),
        allocated_before: chain_allocated(disk.as_ref()),
        output_file_size,
        allocated_after,
        seconds: started.elapsed().as_secs_f64(),
        written,
        map,
    })
}

/// A size for people: bytes, KiB, MiB or GiB.
fn mib(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS.iter().find(|(_, unit)| bytes >= *unit).map_or_else(
        || format!("{bytes} B"),
        |(name, unit)| format!("{:.1} {name}", bytes as f64 / *unit as f64),
    )
}

impl SparsifyReport {
    /// The report as text: one line per region, then the totals.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} ({}, {} bytes, table {:?}){}",
            self.input.display(),
            self.input_kind.name(),
            self.virtual_size,
            self.map.table,
            match &self.output {
                Some(o) => format!(" -> {} ({:?})", o.display(), self.output_kind).to_lowercase(),
                None => " (dry run: nothing written)".into(),
            }
        );
        let _ = writeln!(
            s,
            "{:<14} {:>14} {:>12} {:<8} {:>12} {:>12} {:>12}  note",
            "region", "start", "size", "fs", "used", "free", "dropped"
        );
        for r in &self.map.regions {
            let name = match r.number {
                Some(n) => format!("partition {n}"),
                None => format!("{:?}", r.kind).to_lowercase(),
            };
            let note = match r.state {
                RegionState::Kept => format!("kept: {}", r.reason.as_deref().unwrap_or("")),
                RegionState::Free => "free: no partition".into(),
                RegionState::Read => "free blocks read as zero".into(),
            };
            let _ = writeln!(
                s,
                "{:<14} {:>14} {:>12} {:<8} {:>12} {:>12} {:>12}  {}",
                name,
                r.start,
                mib(r.len),
                r.filesystem.as_deref().unwrap_or("-"),
                mib(r.used_bytes),
                mib(r.free_bytes),
                mib(r.dropped_bytes),
                note
            );
        }
        let _ = writeln!(
            s,
            "free {} ({} bytes), dropped {} ({} bytes)",
            mib(self.free_bytes),
            self.free_bytes,
            mib(self.dropped_bytes),
            self.dropped_bytes
        );
        let verb = if self.dry_run { "would be" } else { "is" };
        let _ = writeln!(
            s,
            "input file {} bytes, {} allocated; output {verb} {} bytes, {} allocated; {:.2} s",
            self.input_file_size,
            mib(self.allocated_before),
            self.output_file_size,
            mib(self.allocated_after),
            self.seconds
        );
        if let Some(w) = &self.written {
            s.push_str(&written_text(w));
        }
        s
    }
}
