//! Where the structures of one VHD file are, parsed from the file's bytes.
//!
//! `Layout::parse` takes the whole file as a slice (a memory map) and locates
//! the footer(s), the dynamic header, the BAT and the batmap. It is lenient:
//! a structure that cannot be parsed is kept as its error, so that `check` can
//! report it and `info` can still show the rest. Only a file with no footer at
//! either end is "not a VHD".

use super::bat::table_size_bytes;
use super::batmap::BATMAP_HEADER_SIZE;
use super::footer::{FIXED_DATA_OFFSET, FOOTER_SIZE_U64, OLD_FOOTER_SIZE};
use super::header::HEADER_SIZE_U64;
use super::{
    Bat, Batmap, DiskType, DynamicHeader, Footer, FormatError, FOOTER_COOKIE, FOOTER_SIZE,
};

/// Where the tail footer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailFooter {
    /// A 512-byte footer in the last sector.
    Standard,
    /// A 511-byte footer (files made before Virtual PC 2004).
    Short,
    /// No footer cookie at the end of the file.
    Missing,
}

/// The batmap extension, when present.
#[derive(Debug, Clone)]
pub struct BatmapParts {
    pub header_offset: u64,
    pub header: Batmap,
    /// The bitmap bytes, when they lie inside the file.
    pub map: Result<Vec<u8>, FormatError>,
}

/// The structures of a dynamic or differencing disk.
#[derive(Debug, Clone)]
pub struct DynamicParts {
    pub header_offset: u64,
    pub header: DynamicHeader,
    pub bat: Result<Bat, FormatError>,
    pub batmap: Option<BatmapParts>,
}

/// Everything located in one VHD file.
#[derive(Debug, Clone)]
pub struct Layout {
    pub file_size: u64,
    pub tail_kind: TailFooter,
    /// Offset of the tail footer (or where it should be).
    pub footer_offset: u64,
    /// The tail footer as parsed (an error when missing or damaged).
    pub tail_footer: Result<Footer, FormatError>,
    /// The copy at offset 0, for anything but a fixed disk.
    pub head_footer: Option<Result<Footer, FormatError>>,
    /// The footer the rest is read by: the tail one, else the head copy.
    pub footer: Footer,
    /// Dynamic header, BAT and batmap for dynamic and differencing disks.
    pub dynamic: Option<Result<DynamicParts, FormatError>>,
}

fn slice_at(bytes: &[u8], offset: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    let len = usize::try_from(len).ok()?;
    bytes.get(start..start.checked_add(len)?)
}

/// Whether `bytes` ends with something that looks like a VHD footer.
pub fn tail_footer_kind(bytes: &[u8]) -> TailFooter {
    let n = bytes.len();
    if n >= FOOTER_SIZE && bytes[n - FOOTER_SIZE..].starts_with(&FOOTER_COOKIE) {
        TailFooter::Standard
    } else if n >= OLD_FOOTER_SIZE && bytes[n - OLD_FOOTER_SIZE..].starts_with(&FOOTER_COOKIE) {
        TailFooter::Short
    } else {
        TailFooter::Missing
    }
}

/// Whether a VHD footer copy stands at offset 0 of a dynamic/differencing disk.
pub fn has_head_footer(bytes: &[u8]) -> bool {
    bytes.len() >= FOOTER_SIZE
        && bytes.starts_with(&FOOTER_COOKIE)
        && Footer::parse(&bytes[..FOOTER_SIZE], 0).is_ok_and(|f| f.data_offset != FIXED_DATA_OFFSET)
}

impl Layout {
    /// Locates the structures of the VHD file `bytes`; `None` if it is not a
    /// VHD (no footer at the end, and no footer copy at offset 0).
    pub fn parse(bytes: &[u8]) -> Option<Layout> {
        let file_size = bytes.len() as u64;
        let tail_kind = tail_footer_kind(bytes);
        let (footer_offset, tail_footer) = match tail_kind {
            TailFooter::Standard => {
                let off = file_size - FOOTER_SIZE_U64;
                (off, Footer::parse(&bytes[bytes.len() - FOOTER_SIZE..], off))
            }
            TailFooter::Short => {
                let off = file_size - 511;
                (
                    off,
                    Footer::parse(&bytes[bytes.len() - OLD_FOOTER_SIZE..], off),
                )
            }
            TailFooter::Missing => {
                let off = file_size.saturating_sub(FOOTER_SIZE_U64);
                let found = slice_at(bytes, off, FOOTER_SIZE_U64).map_or_else(
                    || format!("a file of {file_size} bytes"),
                    |s| super::escape_bytes(s.get(..8).unwrap_or(s)),
                );
                let err = FormatError {
                    structure: "footer",
                    field: "cookie",
                    offset: off,
                    found,
                    expected: "\"conectix\"".into(),
                };
                (off, Err(err))
            }
        };
        let head = has_head_footer(bytes).then(|| Footer::parse(&bytes[..FOOTER_SIZE], 0));
        let (footer, footer_at) = match (&tail_footer, &head) {
            (Ok(f), _) => (f.clone(), footer_offset),
            (Err(_), Some(Ok(f))) => (f.clone(), 0),
            _ => return None,
        };
        let is_fixed =
            footer.data_offset == FIXED_DATA_OFFSET || footer.disk_type() == Some(DiskType::Fixed);
        // A fixed disk has no copy at offset 0: whatever is there is data.
        let head_footer = if is_fixed {
            None
        } else {
            Some(head.unwrap_or_else(|| {
                Footer::parse(slice_at(bytes, 0, FOOTER_SIZE_U64).unwrap_or(&[]), 0)
            }))
        };
        let dynamic = (!is_fixed).then(|| parse_dynamic(bytes, &footer, footer_at));
        Some(Layout {
            file_size,
            tail_kind,
            footer_offset,
            tail_footer,
            head_footer,
            footer,
            dynamic,
        })
    }

    /// The disk type the footer declares, if it is a known one.
    /// The end of the last structure a dynamic disk's header points to
    /// (header, BAT, allocated blocks, locator data): where the footer
    /// belongs. `None` without a readable dynamic header and BAT.
    pub fn structures_end(&self) -> Option<u64> {
        let parts = self.dynamic.as_ref()?.as_ref().ok()?;
        let h = &parts.header;
        let bat = parts.bat.as_ref().ok()?;
        let span = h.bitmap_size_bytes() + u64::from(h.block_size);
        let mut end = h
            .table_offset
            .saturating_add(super::bat::table_size_bytes(u64::from(h.max_table_entries)));
        end = end.max(parts.header_offset + super::header::HEADER_SIZE_U64);
        for s in bat.entries.iter().filter(|&&e| e != super::BAT_UNUSED) {
            end = end.max(u64::from(*s) * super::SECTOR_SIZE + span);
        }
        for l in h.parent_locators.iter().filter(|l| l.platform_code != 0) {
            end = end.max(
                l.platform_data_offset
                    .saturating_add(u64::from(l.platform_data_length)),
            );
        }
        Some(end)
    }

    pub fn disk_type(&self) -> Option<DiskType> {
        self.footer.disk_type()
    }
}

/// `footer_at` is the offset of the footer read (the tail one, or the copy at 0).
fn parse_dynamic(
    bytes: &[u8],
    footer: &Footer,
    footer_at: u64,
) -> Result<DynamicParts, FormatError> {
    let header_offset = footer.data_offset;
    let header_bytes =
        slice_at(bytes, header_offset, HEADER_SIZE_U64).ok_or_else(|| FormatError {
            structure: "footer",
            field: "data offset",
            offset: footer_at + 16,
            found: format!("{header_offset:#x}"),
            expected: format!(
                "the offset of a 1024-byte dynamic header inside the file ({} bytes)",
                bytes.len()
            ),
        })?;
    let header = DynamicHeader::parse(header_bytes, header_offset)?;
    let bat = parse_bat(bytes, &header, header_offset);
    let batmap = bat.as_ref().ok().and_then(|_| parse_batmap(bytes, &header));
    Ok(DynamicParts {
        header_offset,
        header,
        bat,
        batmap,
    })
}

fn parse_bat(bytes: &[u8], header: &DynamicHeader, header_offset: u64) -> Result<Bat, FormatError> {
    let entries = u64::from(header.max_table_entries);
    let len = entries * 4;
    let table = slice_at(bytes, header.table_offset, len).ok_or_else(|| {
        let end = header.table_offset.saturating_add(len);
        FormatError {
            structure: "dynamic header",
            field: "table offset",
            offset: header_offset + 16,
            found: format!(
                "{:#x} with {entries} entries (table ends at {end:#x})",
                header.table_offset
            ),
            expected: format!("a table inside the file ({:#x} bytes)", bytes.len()),
        }
    })?;
    Bat::parse(table, header.max_table_entries, header.table_offset)
}

fn parse_batmap(bytes: &[u8], header: &DynamicHeader) -> Option<BatmapParts> {
    let header_offset = header
        .table_offset
        .checked_add(table_size_bytes(u64::from(header.max_table_entries)))?;
    let hb = slice_at(bytes, header_offset, BATMAP_HEADER_SIZE as u64)?;
    let batmap = Batmap::parse(hb, header_offset).ok()??;
    let len = u64::from(batmap.batmap_size_sectors) * 512;
    let map = slice_at(bytes, batmap.batmap_offset, len)
        .map(|s| s.to_vec())
        .ok_or_else(|| FormatError {
            structure: "batmap header",
            field: "batmap offset",
            offset: header_offset + 8,
            found: format!("{:#x} + {len} bytes", batmap.batmap_offset),
            expected: format!("a bitmap inside the file ({:#x} bytes)", bytes.len()),
        });
    Some(BatmapParts {
        header_offset,
        header: batmap,
        map,
    })
}
