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

use crate::convert::{self, ConvertOptions, Report, Target};
use crate::disk::{self, Kind, VirtualDisk};
use crate::format::footer::Creator;
use crate::format::header::DEFAULT_BLOCK_SIZE;
use crate::fs::usage::{map_disk, DiskMap, FreeZeroed, RegionState};
use crate::pipeline::digest::Algo;
use crate::pipeline::plan;
use crate::pipeline::Progress;
use crate::{Error, Result};

/// Options of `sparsify`.
#[derive(Debug, Clone)]
pub struct SparsifyOptions {
    pub to: Target,
    pub block_size: u32,
    pub digests: Vec<Algo>,
}

impl Default for SparsifyOptions {
    fn default() -> Self {
        SparsifyOptions {
            to: Target::Dynamic,
            block_size: DEFAULT_BLOCK_SIZE,
            digests: Vec::new(),
        }
    }
}

/// What `sparsify` found and did.
#[derive(Debug, Serialize)]
pub struct SparsifyReport {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub dry_run: bool,
    pub input_kind: Kind,
    pub output_kind: Target,
    pub virtual_size: u64,
    /// The disk laid out: `table` and `regions`.
    pub map: DiskMap,
    /// Bytes the filesystems and the table leave free.
    pub free_bytes: u64,
    /// Free bytes that held data in the input and read as zero in the output.
    pub dropped_bytes: u64,
    pub input_file_size: u64,
    /// The input's allocated bytes on its filesystem (a chain: every link).
    pub allocated_before: u64,
    /// The output's size (planned, with --dry-run).
    pub output_file_size: u64,
    /// The output's allocated bytes (with --dry-run: the planned data bytes,
    /// an upper bound).
    pub allocated_after: u64,
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

/// Lays `input` out and measures what sparsify would drop: the part of
/// the command that reads only (also what `preflight` asks).
pub fn survey(disk: &dyn VirtualDisk) -> Result<DiskMap> {
    let mut map = map_disk(disk);
    map.measure_dropped(disk).map_err(|e| Error::Unsupported {
        path: disk.path().to_path_buf(),
        what: format!("reading free space: {e}"),
    })?;
    Ok(map)
}

/// `(file size, allocated bytes)` the output would have.
fn predict(view: &dyn VirtualDisk, opts: &SparsifyOptions) -> Result<(u64, u64)> {
    let size = view.size_bytes();
    match opts.to {
        Target::Dynamic => {
            convert::validate_block_size(opts.block_size)?;
            let blocks = convert::stored_blocks(view, size, opts.block_size)?;
            let footer = crate::format::Footer::new(
                crate::format::DiskType::Dynamic,
                size,
                Creator::by_name(convert::DEFAULT_CREATOR)
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
    convert::require_clean(input)?;
    let disk = disk::open(input)?;
    let map = survey(disk.as_ref())?;
    let view = FreeZeroed::new(disk.as_ref(), &map);
    let (output_file_size, allocated_after, written) = match output {
        None => {
            let (size, alloc) = predict(&view, opts)?;
            (size, alloc, None)
        }
        Some(out) => {
            let copts = ConvertOptions {
                to: opts.to,
                block_size: opts.block_size,
                digests: opts.digests.clone(),
                ..ConvertOptions::default()
            };
            let r = convert::write_disk(&view, input, out, &copts, progress)?;
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
        s
    }
}
