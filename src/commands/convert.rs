//! The commands built on the pipeline: `convert`, `compact`, `checksum`.
//!
//! Each one: check the input (a damaged VHD is refused before anything is
//! written), plan the output as data, run the plan into a temporary file
//! beside the target while digesting it, sync, rename.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::check;
use crate::disk::{self, detect, Kind, Source, VirtualDisk};
use crate::format::footer::Creator;
use crate::format::header::{DEFAULT_BLOCK_SIZE, HEADER_DATA_OFFSET, HEADER_VERSION};
use crate::format::{DiskType, DynamicHeader, Footer, Layout, ParentLocator, VHD_EPOCH_UNIX};
use crate::output::Output;
use crate::pipeline::digest::{Algo, Digests};
use crate::pipeline::plan::{self, full_bitmap, StoredBlock};
use crate::pipeline::{self, DataSource, Progress};
use crate::{Error, Result};

/// The creator new VHDs carry unless told otherwise: `win ` (Hyper-V). Every
/// consumer reads its size from `current size` (qemu old and new, Hyper-V,
/// Azure, Glance via original size = current size).
pub const DEFAULT_CREATOR: &str = "win";

/// Output formats of `convert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Fixed,
    Dynamic,
    Raw,
}

/// Options of `convert`.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub to: Target,
    pub block_size: u32,
    /// Round the virtual size up to a multiple of this (at least 512 for VHD outputs).
    pub align: u64,
    pub creator: String,
    pub digests: Vec<Algo>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            to: Target::Dynamic,
            block_size: DEFAULT_BLOCK_SIZE,
            align: 512,
            creator: DEFAULT_CREATOR.into(),
            digests: Vec::new(),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub input: PathBuf,
    pub output: PathBuf,
    pub input_kind: Kind,
    pub output_kind: String,
    pub virtual_size: u64,
    pub file_size: u64,
    pub block_size: u64,
    pub data_blocks: u64,
    pub zero_blocks: u64,
    #[serde(flatten)]
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

/// Refuses a VHD that `check` finds errors in; raw inputs pass.
pub fn require_clean(path: &Path) -> Result<()> {
    let source = Source::open(path)?;
    if detect(source.bytes()).is_none() {
        return Ok(());
    }
    drop(source);
    check::check_path(path, &check::Options::default())?.into_result(path)?;
    Ok(())
}

/// Now, as a VHD timestamp.
pub fn now_vhd_timestamp() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u32::try_from(now.saturating_sub(VHD_EPOCH_UNIX.unsigned_abs())).unwrap_or(u32::MAX)
}

/// Refuses a block size VHD readers do not accept.
pub fn validate_block_size(bs: u32) -> Result<()> {
    if !bs.is_power_of_two() || !(512..=crate::disk::dynamic::MAX_BLOCK_SIZE).contains(&bs) {
        return Err(Error::Usage(format!(
            "--block-size {bs}: expected a power of two from 512 bytes to 256M (2M is the standard; Hyper-V also uses 512K)"
        )));
    }
    Ok(())
}

/// `vhdkit convert`.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    require_clean(input)?;
    let disk = disk::open(input)?;
    write_disk(disk.as_ref(), input, output, opts, progress)
}

/// Writes the virtual disk `disk` (read from `input`) to `output` in the
/// format `opts` asks for.
pub fn write_disk(
    disk: &dyn VirtualDisk,
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
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
    if opts.to != Target::Raw && opts.align % 512 != 0 {
        return Err(Error::Usage(format!(
            "--align {}: a VHD's size is a whole number of 512-byte sectors",
            opts.align
        )));
    }
    let align = if opts.to == Target::Raw {
        opts.align.max(1)
    } else {
        opts.align.max(512)
    };
    let size = crate::format::round_up(disk.size_bytes(), align)
        .ok_or_else(|| Error::Usage("size overflows".into()))?;
    if opts.to != Target::Raw && size > crate::format::MAX_VIRTUAL_SIZE {
        return Err(Error::Unsupported {
            path: input.to_path_buf(),
            what: format!(
                "virtual size {size} is above the VHD limit of {} bytes (2040 GiB)",
                crate::format::MAX_VIRTUAL_SIZE
            ),
        });
    }
    let out = Output::create(output, &[input])?;
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

/// `vhdkit compact`: a dynamic VHD rewritten with its zero blocks dropped
/// and no gaps; a differencing disk keeps its parent and its own sectors,
/// dropping blocks whose sectors all read from the parent. Identity (unique
/// id, creator, sizes, timestamp, block size) is kept.
pub fn compact(
    input: &Path,
    output: &Path,
    digests: &[Algo],
    progress: &dyn Progress,
) -> Result<Report> {
    require_clean(input)?;
    let source = Source::open(input)?;
    let layout = Layout::parse(source.bytes())
        .filter(|l| l.dynamic.is_some())
        .ok_or_else(|| Error::Usage(format!(
            "{}: compact takes a dynamic or differencing VHD; use `convert --to dynamic` for other inputs",
            input.display()
        )))?;
    let parts = layout
        .dynamic
        .clone()
        .and_then(|d| d.ok())
        .ok_or_else(|| Error::Usage(format!("{}: no dynamic header", input.display())))?;
    let bat = parts.bat.clone().map_err(|e| Error::corrupt(input, e))?;
    let footer = layout.footer.clone();
    let header = parts.header.clone();
    let differencing = footer.disk_type() == Some(DiskType::Differencing);
    let out = Output::create(output, &[input])?;
    let bs = u64::from(header.block_size);
    let bitmap_len = header.bitmap_size_bytes();
    let (plan, report_kind, digests) = if differencing {
        // Keep this disk's own sectors and bitmaps; drop blocks that defer
        // every sector to the parent.
        let mut blocks = Vec::new();
        for i in 0..bat.entries.len() {
            let Some(sector) = bat.sector(i) else {
                continue;
            };
            let start = u64::from(sector) * 512;
            let bitmap = source.slice(start, bitmap_len, "sector bitmap")?;
            if bitmap.iter().all(|&b| b == 0) {
                continue;
            }
            let voff = i as u64 * bs;
            let len = bs.min(footer.current_size.saturating_sub(voff));
            if len == 0 {
                continue;
            }
            blocks.push(StoredBlock {
                block_index: i as u64,
                source_offset: start + bitmap_len,
                len,
                bitmap: std::sync::Arc::from(bitmap),
            });
        }
        let locators = locator_payloads(&source, &header);
        let plan = plan::plan_dynamic(&footer, &header, &locators, &blocks)?;
        let d = pipeline::run(
            &plan,
            &DataSource::File(&source),
            out.file(),
            out.target(),
            digests,
            progress,
        )?;
        (plan, Kind::Differencing, d)
    } else {
        let disk = disk::open(input)?;
        let blocks = stored_blocks(disk.as_ref(), footer.current_size, header.block_size)?;
        let mut h = DynamicHeader::new(0, 0, header.block_size);
        h.header_version = HEADER_VERSION;
        h.data_offset = HEADER_DATA_OFFSET;
        let plan = plan::plan_dynamic(&footer, &h, &[], &blocks)?;
        let d = pipeline::run(
            &plan,
            &DataSource::Disk(disk.as_ref()),
            out.file(),
            out.target(),
            digests,
            progress,
        )?;
        (plan, Kind::Dynamic, d)
    };
    out.commit()?;
    Ok(Report::new(
        input,
        output,
        report_kind,
        report_kind.name(),
        &plan,
        digests,
    ))
}

/// The locators of `header` with their data, in order.
fn locator_payloads(source: &Source, header: &DynamicHeader) -> Vec<(ParentLocator, Vec<u8>)> {
    header
        .parent_locators
        .iter()
        .filter(|l| l.platform_code != 0)
        .filter_map(|l| {
            let data = source
                .slice(
                    l.platform_data_offset,
                    u64::from(l.platform_data_length),
                    "locator",
                )
                .ok()?;
            Some((*l, data.to_vec()))
        })
        .collect()
}

/// `vhdkit checksum`: digests of a file's bytes exactly as uploaded.
pub fn checksum(path: &Path, algos: &[Algo], progress: &dyn Progress) -> Result<Digests> {
    let source = Source::open(path)?;
    source.advise_sequential();
    let bytes = source.bytes();
    const CHUNK: usize = 1 << 20;
    let digests = std::thread::scope(|scope| {
        let mut sink = pipeline::digest::DigestSink::start(scope, algos);
        let mut released = 0u64;
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            if pipeline::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            // A hole is digested from static zeros: its pages are never mapped.
            let offset = i as u64 * CHUNK as u64;
            if source.is_hole(offset, chunk.len() as u64) {
                sink.feed(pipeline::digest::Chunk::Borrowed(pipeline::zeros(
                    chunk.len(),
                )));
            } else {
                sink.feed(pipeline::digest::Chunk::Borrowed(chunk));
            }
            progress.advance(chunk.len() as u64);
            let done = sink.consumed();
            if done > released + (8 << 20) {
                source.release(released, done - released);
                released = done;
            }
        }
        sink.finish()
    });
    if pipeline::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Usage("interrupted".into()));
    }
    Ok(digests)
}
