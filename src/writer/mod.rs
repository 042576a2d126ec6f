//! The image writer: everything a command needs to produce an output
//! image. The output target ([`Output`]: a temporary file beside OUT,
//! synced unless told not to, renamed), the gate that refuses a damaged
//! input ([`require_clean`]), size parsing, and [`write_disk`], which writes
//! any [`VirtualDisk`] as a fixed or dynamic VHD or a raw file through the
//! pipeline, digesting the output as it is written (the one digest engine is
//! [`crate::pipeline::digest`]).
//!
//! It sits above `pipeline/` and `check/` and below `partition/`, `fs/`,
//! `cloud/`, `grow/` and the commands; it never prints.

pub mod child;
pub mod output;
pub mod package;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check;
use crate::disk::{detect, Kind, Source, VirtualDisk};
use crate::format::footer::Creator;
use crate::format::header::DEFAULT_BLOCK_SIZE;
use crate::format::{DiskType, DynamicHeader, Footer, SECTOR_SIZE, VHD_EPOCH_UNIX};
use crate::pipeline::digest::{Algo, Digests};
use crate::pipeline::plan::{self, full_bitmap, StoredBlock};
use crate::pipeline::{self, DataSource, Progress};
use crate::{Error, Result};
pub use output::{same_file, Output};

/// The creator new VHDs carry unless told otherwise: `win ` (Hyper-V). Every
/// consumer reads its size from `current size` (qemu old and new, Hyper-V,
/// Azure, Glance via original size = current size).
pub const DEFAULT_CREATOR: &str = "win";

/// Output formats of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Target {
    /// A fixed VHD: the data, then the footer.
    Fixed,
    /// A dynamic VHD: only data blocks stored.
    Dynamic,
    /// A raw file, sparse where the disk reads as zero.
    Raw,
}

/// How [`write_disk`] writes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriteOptions {
    /// The output format (dynamic by default).
    pub to: Target,
    /// Block size of a dynamic output in bytes: a power of two (2 MiB by default).
    pub block_size: u32,
    /// Round the virtual size up to a multiple of this (at least 512 for VHD outputs).
    pub align: u64,
    /// Creator application written in the footer: `win` (default), `tap`, `qemu`, `qem2`, `vpc`, `vs`, `d2v`, `CTXS`, `vbox`, `wa`.
    pub creator: String,
    /// Digests of the output file to compute while it is written (none by default).
    pub digests: Vec<Algo>,
    /// Rename without fsync (`--no-sync`): see [`output`].
    pub no_sync: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            to: Target::Dynamic,
            block_size: DEFAULT_BLOCK_SIZE,
            align: SECTOR_SIZE,
            creator: DEFAULT_CREATOR.into(),
            digests: Vec::new(),
            no_sync: false,
        }
    }
}

/// What a write produced.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    #[serde(serialize_with = "crate::format::path_json::path")]
    /// The file read.
    pub input: PathBuf,
    #[serde(serialize_with = "crate::format::path_json::path")]
    /// The file written.
    pub output: PathBuf,
    /// What the input was.
    pub input_kind: Kind,
    /// What the output is: `fixed`, `dynamic`, `raw` or `differencing`.
    pub output_kind: String,
    /// The output's virtual size in bytes.
    pub virtual_size: u64,
    /// The output file's length in bytes.
    pub file_size: u64,
    /// The block size the output was planned in.
    pub block_size: u64,
    /// Blocks written with data.
    pub data_blocks: u64,
    /// Blocks left out because they read as zero.
    pub zero_blocks: u64,
    /// A differencing output only: its parent's virtual size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_size: Option<u64>,
    /// A differencing output only: the bytes of its data blocks that lie
    /// past the parent's end (every sector there is in the child).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beyond_parent_bytes: Option<u64>,
    #[serde(flatten)]
    /// The digests asked for, of the output file's bytes, and its size.
    pub digests: Digests,
}

impl Report {
    /// The report of a plan that was written.
    pub fn new(
        input: &Path,
        output: &Path,
        input_kind: Kind,
        output_kind: &str,
        plan: &plan::Plan,
        digests: Digests,
    ) -> Report {
        Report {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            input_kind,
            output_kind: output_kind.to_string(),
            virtual_size: plan.size_bytes,
            file_size: plan.file_size,
            block_size: plan.block_size,
            data_blocks: plan.data_blocks,
            zero_blocks: plan.zero_blocks,
            parent_size: None,
            beyond_parent_bytes: None,
            digests,
        }
    }
}

/// Parses a size with an optional binary suffix: `512`, `64K`, `1M`, `2G`, `1T`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'B' => 1,
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => {
                    return Err(format!(
                        "{text:?}: unknown size suffix {c:?} (use K, M, G or T)"
                    ))
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| {
        format!("{text:?}: not a size (a number with an optional K, M, G or T suffix)")
    })?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// Refuses another image format, and a VHD that `check` finds errors in
/// (parents looked for where `parents` allow); raw inputs pass.
pub fn require_clean(path: &Path, parents: &crate::disk::ParentOptions) -> Result<()> {
    crate::disk::refuse_foreign(path)?;
    let source = Source::open(path)?;
    if detect(source.bytes()).is_none() {
        return Ok(());
    }
    drop(source);
    let options = check::Options {
        parents: parents.clone(),
        ..check::Options::default()
    };
    check::check_path(path, &options)?.into_result(path)?;
    Ok(())
}

/// Now, as a VHD timestamp.
pub fn now_vhd_timestamp() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(now.saturating_sub(VHD_EPOCH_UNIX.unsigned_abs())).unwrap_or(u32::MAX)
}

/// Refuses a block size VHD readers do not accept or read differently
/// (the rule is [`crate::format::header::writable_block_size`]'s: a power
/// of two from 4 KiB, as below it qemu reads other data, to 256 MiB).
pub fn validate_block_size(bs: u32) -> Result<()> {
    crate::format::header::writable_block_size(bs, crate::disk::dynamic::MAX_BLOCK_SIZE)
        .map(|_| ())
        .map_err(|e| {
            Error::Usage(format!(
                "--block-size: {e}; 2M is the standard, and Hyper-V reads only 512K and 2M"
            ))
        })
}

/// Writes the virtual disk `disk` (read from `input`) to `output` in the
/// format `opts` asks for.
pub fn write_disk(
    disk: &dyn VirtualDisk,
    input: &Path,
    output: &Path,
    opts: &WriteOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    let creator = Creator::by_name(&opts.creator).ok_or_else(|| {
        Error::Usage(format!(
            "--creator {:?}: expected one of {}",
            opts.creator,
            Creator::NAMES.join(", ")
        ))
    })?;
    validate_block_size(opts.block_size)?;
    if opts.to != Target::Raw && opts.align % SECTOR_SIZE != 0 {
        return Err(Error::Usage(format!(
            "--align {}: a VHD's size is a whole number of {SECTOR_SIZE}-byte sectors",
            opts.align
        )));
    }
    let align = if opts.to == Target::Raw {
        opts.align.max(1)
    } else {
        opts.align.max(512)
    };
    let size = crate::format::round_up(disk.size_bytes(), align)
        .ok_or_else(|| Error::unsupported(input, "the aligned size overflows 64 bits"))?;
    if opts.to != Target::Raw && size > crate::format::MAX_VIRTUAL_SIZE {
        return Err(Error::Unsupported {
            path: input.to_path_buf(),
            what: format!(
                "virtual size {size} is above the VHD limit of {} bytes (2040 GiB)",
                crate::format::MAX_VIRTUAL_SIZE
            ),
        });
    }
    let out = Output::create(output, &[input])?.no_sync(opts.no_sync);
    let timestamp = now_vhd_timestamp();
    let unique_id = *uuid::Uuid::new_v4().as_bytes();
    let plan = match opts.to {
        Target::Raw | Target::Fixed => {
            let bs = crate::disk::flat::FLAT_BLOCK_SIZE;
            let classes = plan::classify(disk, size, bs)?;
            let footer = (opts.to == Target::Fixed)
                .then(|| Footer::new(DiskType::Fixed, size, creator, timestamp, unique_id));
            plan::plan_flat(&classes, disk.size_bytes(), size, bs, footer.as_ref())
        }
        Target::Dynamic => {
            let footer = Footer::new(DiskType::Dynamic, size, creator, timestamp, unique_id);
            let header = DynamicHeader::new(0, 0, opts.block_size);
            let blocks = stored_blocks(disk, size, opts.block_size)?;
            plan::plan_dynamic(&footer, &header, &[], &blocks)?
        }
    };
    let digests = pipeline::run(
        &plan,
        &DataSource::Disk(disk),
        out.file(),
        out.target(),
        &opts.digests,
        progress,
    )?;
    out.commit()?;
    let output_kind = match opts.to {
        Target::Fixed => "fixed",
        Target::Dynamic => "dynamic",
        Target::Raw => "raw",
    };
    Ok(Report::new(
        input,
        output,
        disk.kind(),
        output_kind,
        &plan,
        digests,
    ))
}

/// The data blocks of a dynamic output read from `disk`.
pub fn stored_blocks(
    disk: &dyn VirtualDisk,
    size: u64,
    block_size: u32,
) -> Result<Vec<StoredBlock>> {
    let bs = u64::from(block_size);
    let classes = plan::classify(disk, size, bs)?;
    let bitmap = full_bitmap(block_size);
    let disk_size = disk.size_bytes();
    Ok(classes
        .iter()
        .enumerate()
        .filter(|(_, &d)| d)
        .map(|(i, _)| {
            let off = i as u64 * bs;
            StoredBlock {
                block_index: i as u64,
                source_offset: off,
                len: bs.min(disk_size - off),
                bitmap: std::sync::Arc::clone(&bitmap),
            }
        })
        .collect())
}
