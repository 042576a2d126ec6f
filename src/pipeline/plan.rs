//! Laying out an output as plain data: which blocks hold data, and where
//! every byte of the output file comes from. No output I/O here.

use std::path::Path;
use std::sync::Arc;

use rayon::prelude::*;

use super::zero::is_zero;
use crate::disk::VirtualDisk;
use crate::format::bat::table_size_bytes;
use crate::format::header::bitmap_size_bytes;
use crate::format::{Bat, DynamicHeader, Footer, ParentLocator, BAT_UNUSED};
use crate::{Error, Result};

/// One run of the output file, in file order.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Bytes made by the plan (footers, header, BAT, bitmaps, locators).
    Meta { file_offset: u64, bytes: Arc<[u8]> },
    /// `len` bytes read from the source at `source_offset`, then `pad` zeros.
    Data {
        file_offset: u64,
        source_offset: u64,
        len: u64,
        pad: u64,
    },
    /// Zeros left as a hole in the output.
    Hole { file_offset: u64, len: u64 },
}

/// A whole output, laid out.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pieces: Vec<Piece>,
    pub file_size: u64,
    /// Virtual size of the output disk.
    pub size_bytes: u64,
    pub block_size: u64,
    /// Blocks stored with data, and blocks left out (zero).
    pub data_blocks: u64,
    pub zero_blocks: u64,
}

/// Classifies the blocks of `disk` of `block_size` bytes, covering `size`
/// bytes (beyond the disk's size reads as zero): `true` for a block that
/// holds any non-zero byte. Runs in parallel; reads only what it must.
pub fn classify(disk: &dyn VirtualDisk, size: u64, block_size: u64) -> Result<Vec<bool>> {
    let disk_size = disk.size_bytes();
    let count = size.div_ceil(block_size);
    (0..count)
        .into_par_iter()
        .map(|i| {
            let off = i * block_size;
            if off >= disk_size {
                return Ok(false);
            }
            let len = block_size.min(disk_size - off);
            if disk.is_unallocated(off, len) {
                return Ok(false);
            }
            let n = usize::try_from(len).map_err(|_| {
                Error::unsupported(
                    Path::new(""),
                    format!("a {len}-byte block on this platform"),
                )
            })?;
            let data = match disk.range(off, n)? {
                crate::disk::Block::Zero => false,
                b => !b.data().is_none_or(is_zero),
            };
            disk.release(off, len);
            Ok(data)
        })
        .collect()
}

/// A raw or fixed output: data blocks written, zero blocks left as holes,
/// then the footer for a fixed disk.
pub fn plan_flat(
    classes: &[bool],
    disk_size: u64,
    size: u64,
    block_size: u64,
    footer: Option<&Footer>,
) -> Plan {
    let mut pieces = Vec::new();
    let mut data_blocks = 0;
    for (i, &data) in classes.iter().enumerate() {
        let off = i as u64 * block_size;
        let len = block_size.min(size - off);
        let inside = len.min(disk_size.saturating_sub(off));
        if data && inside > 0 {
            data_blocks += 1;
            pieces.push(Piece::Data {
                file_offset: off,
                source_offset: off,
                len: inside,
                pad: 0,
            });
            if len > inside {
                pieces.push(Piece::Hole {
                    file_offset: off + inside,
                    len: len - inside,
                });
            }
        } else {
            match pieces.last_mut() {
                Some(Piece::Hole { len: l, .. }) => *l += len,
                _ => pieces.push(Piece::Hole {
                    file_offset: off,
                    len,
                }),
            }
        }
    }
    let mut file_size = size;
    if let Some(f) = footer {
        pieces.push(Piece::Meta {
            file_offset: size,
            bytes: Arc::from(f.to_bytes().as_slice()),
        });
        file_size += 512;
    }
    Plan {
        pieces,
        file_size,
        size_bytes: size,
        block_size,
        data_blocks,
        zero_blocks: classes.len() as u64 - data_blocks,
    }
}

/// A stored block of a dynamic output.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    pub block_index: u64,
    /// Where its data comes from in the source, and how many bytes.
    pub source_offset: u64,
    pub len: u64,
    /// The block's sector bitmap (all ones for a converted block).
    pub bitmap: Arc<[u8]>,
}

/// A dynamic (or differencing) output: footer copy, header, BAT, locator
/// data, the stored blocks in virtual order, footer. `header` supplies the
/// fields kept (parent id, name, timestamp; block size); the table offset,
/// entry count, locator offsets and checksum are set here.
pub fn plan_dynamic(
    footer: &Footer,
    header: &DynamicHeader,
    locators: &[(ParentLocator, Vec<u8>)],
    blocks: &[StoredBlock],
) -> Result<Plan> {
    let size = footer.current_size;
    let block_size = u64::from(header.block_size);
    let entries = size.div_ceil(block_size);
    let max_table_entries = u32::try_from(entries).map_err(|_| {
        Error::unsupported(
            Path::new(""),
            format!("{entries} blocks exceed the VHD table's limit"),
        )
    })?;
    let bitmap_len = bitmap_size_bytes(header.block_size);
    let table_offset = 512 + 1024;
    let mut at = table_offset + table_size_bytes(entries);
    let mut h = header.clone();
    h.table_offset = table_offset;
    h.max_table_entries = max_table_entries;
    h.parent_locators = std::array::from_fn(|_| ParentLocator {
        platform_code: 0,
        platform_data_space: 0,
        platform_data_length: 0,
        reserved: 0,
        platform_data_offset: 0,
    });
    let mut locator_pieces = Vec::new();
    for (i, (loc, data)) in locators.iter().enumerate().take(8) {
        let space = (data.len() as u64).max(1).next_multiple_of(512);
        h.parent_locators[i] = ParentLocator {
            platform_code: loc.platform_code,
            // Bytes, as Windows and Virtual PC write it.
            platform_data_space: u32::try_from(space).unwrap_or(u32::MAX),
            platform_data_length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            reserved: 0,
            platform_data_offset: at,
        };
        let mut bytes = data.clone();
        bytes.resize(usize::try_from(space).unwrap_or(bytes.len()), 0);
        locator_pieces.push(Piece::Meta {
            file_offset: at,
            bytes: Arc::from(bytes),
        });
        at += space;
    }
    h.seal();
    let mut bat = Bat {
        entries: vec![BAT_UNUSED; usize::try_from(entries).unwrap_or(0)],
    };
    let mut block_pieces = Vec::with_capacity(blocks.len() * 2);
    for b in blocks {
        let sector = u32::try_from(at / 512).map_err(|_| {
            Error::unsupported(
                Path::new(""),
                "an output larger than a VHD's 32-bit sector numbers allow",
            )
        })?;
        let idx = usize::try_from(b.block_index).unwrap_or(usize::MAX);
        let slot = bat.entries.get_mut(idx).ok_or_else(|| {
            Error::unsupported(
                Path::new(""),
                format!("block {} beyond the table", b.block_index),
            )
        })?;
        *slot = sector;
        block_pieces.push(Piece::Meta {
            file_offset: at,
            bytes: Arc::clone(&b.bitmap),
        });
        block_pieces.push(Piece::Data {
            file_offset: at + bitmap_len,
            source_offset: b.source_offset,
            len: b.len,
            pad: block_size - b.len,
        });
        at += bitmap_len + block_size;
    }
    let mut f = footer.clone();
    f.data_offset = 512;
    f.seal();
    let footer_bytes: Arc<[u8]> = Arc::from(f.to_bytes().as_slice());
    let mut pieces = vec![
        Piece::Meta {
            file_offset: 0,
            bytes: Arc::clone(&footer_bytes),
        },
        Piece::Meta {
            file_offset: 512,
            bytes: Arc::from(h.to_bytes().as_slice()),
        },
        Piece::Meta {
            file_offset: table_offset,
            bytes: Arc::from(bat.to_bytes()),
        },
    ];
    pieces.extend(locator_pieces);
    pieces.extend(block_pieces);
    pieces.push(Piece::Meta {
        file_offset: at,
        bytes: footer_bytes,
    });
    Ok(Plan {
        pieces,
        file_size: at + 512,
        size_bytes: size,
        block_size,
        data_blocks: blocks.len() as u64,
        zero_blocks: entries - blocks.len() as u64,
    })
}

/// A bitmap with every sector present.
pub fn full_bitmap(block_size: u32) -> Arc<[u8]> {
    let len = usize::try_from(bitmap_size_bytes(block_size)).unwrap_or(512);
    let sectors = usize::try_from(u64::from(block_size) / 512).unwrap_or(0);
    let mut v = vec![0u8; len];
    for s in 0..sectors {
        v[s / 8] |= 0x80 >> (s % 8);
    }
    Arc::from(v)
}
