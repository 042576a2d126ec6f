//! A differencing child over the input holding only what an [`Overlay`]
//! changed (`expand --as-child`).

use std::path::{Path, PathBuf};

use super::{now_vhd_timestamp, validate_block_size, Output, Report, WriteOptions};
use crate::disk::overlay::Overlay;
use crate::disk::{Block, Kind, Source, VirtualDisk};
use crate::format::header::encode_utf16le;
use crate::format::{DiskType, DynamicHeader, Footer, Layout, ParentLocator, PlatformCode};
use crate::pipeline::plan::{self, StoredBlock};
use crate::pipeline::{self, DataSource, Progress};
use crate::{Error, Result};

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

/// The blocks of a child over a parent of `parent_size` bytes: every block
/// holding a changed sector, with only those sectors' bits set, and every
/// block reaching past the parent's end, with the bits of all its sectors
/// beyond that end set (they read as zeros unless changed). libvhdi fails
/// a read the child sends to the parent past the parent's end ("unable to
/// read data from parent file"), so nothing past it is left to the parent.
fn child_blocks(o: &Overlay<'_>, block_size: u32, parent_size: u64) -> Vec<StoredBlock> {
    let size = VirtualDisk::size_bytes(o);
    let bs = u64::from(block_size);
    let bitmap_len =
        usize::try_from(crate::format::header::bitmap_size_bytes(block_size)).unwrap_or(512);
    let mut blocks = Vec::new();
    for i in 0..size.div_ceil(bs) {
        let off = i * bs;
        let len = bs.min(size - off);
        let beyond = off + len > parent_size;
        if !beyond && !o.touches(off, len) {
            continue;
        }
        let mut bitmap = vec![0u8; bitmap_len];
        for s in 0..len / 512 {
            let so = off + s * 512;
            if so >= parent_size || o.touches(so, 512) {
                let s = usize::try_from(s).unwrap_or(usize::MAX);
                if let Some(b) = bitmap.get_mut(s / 8) {
                    *b |= 0x80 >> (s % 8);
                }
            }
        }
        blocks.push(StoredBlock {
            block_index: i,
            source_offset: off,
            len,
            bitmap: std::sync::Arc::from(bitmap),
        });
    }
    blocks
}

/// Writes a differencing VHD over `input` holding only the changed sectors.
pub fn write_child(
    o: &Overlay<'_>,
    input: &Path,
    output: &Path,
    opts: &WriteOptions,
    progress: &dyn Progress,
) -> Result<Report> {
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
    // A child over a dynamic or differencing parent takes the parent's
    // block size, so the chain's blocks line up (libvhdi misreads children
    // with 512 KiB blocks: see README).
    let block_size = match o.base().kind() {
        Kind::Dynamic | Kind::Differencing => {
            u32::try_from(o.base().block_size_bytes()).map_err(|_| {
                Error::Usage(format!(
                    "{}: parent block size out of range",
                    input.display()
                ))
            })?
        }
        _ => opts.block_size,
    };
    validate_block_size(block_size)?;
    let size = VirtualDisk::size_bytes(o);
    let footer = Footer::new(
        DiskType::Differencing,
        size,
        creator,
        now_vhd_timestamp(),
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
    let mut header = DynamicHeader::new(0, 0, block_size);
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
    if let Some(rel) = crate::disk::parent::relative_windows_path(&abs_out_dir, &abs_parent) {
        locators.push(locator(PlatformCode::W2ru, &encode_utf16le(&rel)));
    }
    locators.push(locator(
        PlatformCode::W2ku,
        &encode_utf16le(&abs_parent.to_string_lossy()),
    ));
    // The parent's end as the strictest reader sees it: its footer's
    // current size, or what vhdkit reads (CHS for some creators) if less.
    let parent_size = parent_footer.current_size.min(o.base().size_bytes());
    let blocks = child_blocks(o, block_size, parent_size);
    let plan = plan::plan_dynamic(&footer, &header, &locators, &blocks)?;
    let out = Output::create(output, &[input])?.no_sync(opts.no_sync);
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
    let mut report = Report::new(
        input,
        output,
        o.base().kind(),
        "differencing",
        &plan,
        digests,
    );
    report.parent_size = Some(parent_size);
    report.beyond_parent_bytes = Some(
        blocks
            .iter()
            .map(|b| (b.source_offset + b.len).saturating_sub(b.source_offset.max(parent_size)))
            .sum(),
    );
    Ok(report)
}
