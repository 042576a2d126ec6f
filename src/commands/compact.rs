//! `vhdkit compact`: a dynamic VHD rewritten without its zero blocks and
//! gaps; a differencing disk stays over the same parent.

use std::path::{Path, PathBuf};

use crate::disk::{self, parent, Kind, ParentOptions, Source};
use crate::format::header::{HEADER_DATA_OFFSET, HEADER_VERSION};
use crate::format::{DiskType, DynamicHeader, Layout, ParentLocator};
use crate::pipeline::digest::Algo;
use crate::pipeline::plan::{self, StoredBlock};
use crate::pipeline::{self, DataSource, Progress};
use crate::report::{written_text, Bar, Outcome, ParentArgs, WriteArgs};
use crate::writer::{require_clean, stored_blocks, Output, Report};
use crate::{Error, Result};

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
    compact_with(
        input,
        output,
        digests,
        false,
        &ParentOptions::default(),
        progress,
    )
}

/// [`compact`], renaming without fsync when `no_sync`, with the input's
/// parents also looked for where `parents` allow. A differencing output in
/// another folder gets its relative locators re-aimed at the same parent.
pub fn compact_with(
    input: &Path,
    output: &Path,
    digests: &[Algo],
    no_sync: bool,
    parents: &ParentOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    require_clean(input, parents)?;
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
    let out = Output::create(output, &[input])?.no_sync(no_sync);
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
        let locators = rebased(input, output, &source, &header, parents, locators)?;
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
        let disk = disk::open_with(input, parents)?;
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

/// `locators` for a copy of the child written at `output`: unchanged in the
/// same folder, else with relative ones re-aimed from OUT's folder at the
/// parent the input resolves to.
fn rebased(
    input: &Path,
    output: &Path,
    source: &Source,
    header: &DynamicHeader,
    parents: &ParentOptions,
    locators: Vec<(ParentLocator, Vec<u8>)>,
) -> Result<Vec<(ParentLocator, Vec<u8>)>> {
    let canonical_dir = |p: &Path| std::fs::canonicalize(parent::folder_of(p)).ok();
    let out_dir = canonical_dir(output);
    if out_dir.is_some() && out_dir == canonical_dir(input) {
        return Ok(locators);
    }
    let res = parent::resolve(input, source.bytes(), header, parents, true);
    let found = res.found.clone().ok_or_else(|| Error::Parent {
        path: input.to_path_buf(),
        what: res.not_found_message(header),
    })?;
    parent::rebase_locators(&locators, &found, &parent::folder_of(output))
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

/// Rewrite a dynamic VHD without its zero blocks and gaps (a differencing
/// disk stays over the same parent); identity kept.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// Input dynamic or differencing VHD (read only).
    pub input: PathBuf,
    /// Output path.
    pub output: PathBuf,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub write: WriteArgs,
}

/// `vhdkit compact`.
pub fn run(args: Args) -> Result<Outcome> {
    let bar = Bar::for_file(&args.input, args.write.out.quiet);
    let digests = args.write.digests();
    let r = compact_with(
        &args.input,
        &args.output,
        &digests,
        args.write.no_sync,
        &args.parents.options(),
        &bar,
    );
    drop(bar);
    Outcome::ok(&r?, written_text)
}
