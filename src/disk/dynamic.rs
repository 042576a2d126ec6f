//! Dynamic and differencing VHDs: data found through the BAT and the sector
//! bitmaps, and, for a differencing disk, through its parent.

use std::path::{Path, PathBuf};

use super::{check_range, Block, Chain, Kind, Source, VirtualDisk};
use crate::format::bat::bitmap_bit;
use crate::format::{Bat, DiskType, DynamicHeader, Footer, FormatError, Layout, SECTOR_SIZE};
use crate::{Error, Result};

/// Largest block size vhdkit reads (the specification's default is 2 MiB;
/// Hyper-V uses 32 MiB at most).
pub const MAX_BLOCK_SIZE: u32 = 256 << 20;

/// A dynamic or differencing VHD opened for reading.
pub struct DynamicDisk {
    source: Source,
    kind: Kind,
    footer: Footer,
    header: DynamicHeader,
    bat: Bat,
    block_size: u64,
    bitmap_size: u64,
    size: u64,
    parent: Option<Box<dyn VirtualDisk>>,
    parent_path: Option<PathBuf>,
}

impl std::fmt::Debug for DynamicDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicDisk")
            .field("path", &self.source.path())
            .field("kind", &self.kind)
            .field("size", &self.size)
            .finish()
    }
}

/// What reading needs from a dynamic header: a usable block size and a
/// table that covers the disk.
pub fn validate_for_reading(
    footer: &Footer,
    header: &DynamicHeader,
    header_offset: u64,
) -> std::result::Result<(), FormatError> {
    let bs = header.block_size;
    if !bs.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&bs) {
        return Err(FormatError {
            structure: "dynamic header",
            field: "block size",
            offset: header_offset + 32,
            found: bs.to_string(),
            expected: format!("a power of two from 512 to {MAX_BLOCK_SIZE}"),
        });
    }
    let needed = footer.current_size.div_ceil(u64::from(bs));
    if u64::from(header.max_table_entries) < needed {
        return Err(FormatError {
            structure: "dynamic header",
            field: "max table entries",
            offset: header_offset + 28,
            found: header.max_table_entries.to_string(),
            expected: format!(
                "at least {needed} (current size {} / block size {bs})",
                footer.current_size
            ),
        });
    }
    Ok(())
}

impl DynamicDisk {
    /// Opens a dynamic or differencing disk as the next link of `chain`.
    pub fn open(source: Source, chain: &mut Chain) -> Result<DynamicDisk> {
        let path = source.path().to_path_buf();
        chain.enter(&path);
        let layout = Layout::parse(source.bytes()).ok_or_else(|| Error::Unsupported {
            path: path.clone(),
            what: "no VHD footer".into(),
        })?;
        let footer = layout
            .tail_footer
            .clone()
            .map_err(|e| Error::corrupt(&path, e))?;
        let kind = match footer.disk_type() {
            Some(DiskType::Dynamic) => Kind::Dynamic,
            Some(DiskType::Differencing) => Kind::Differencing,
            _ => {
                return Err(Error::corrupt(
                    &path,
                    FormatError {
                        structure: "footer",
                        field: "disk type",
                        offset: layout.footer_offset + 60,
                        found: footer.disk_type_code.to_string(),
                        expected:
                            "3 (dynamic) or 4 (differencing) for a disk with a dynamic header"
                                .into(),
                    },
                ))
            }
        };
        let parts = layout
            .dynamic
            .clone()
            .ok_or_else(|| Error::Unsupported {
                path: path.clone(),
                what: "a dynamic disk without a dynamic header".into(),
            })?
            .map_err(|e| Error::corrupt(&path, e))?;
        validate_for_reading(&footer, &parts.header, parts.header_offset)
            .map_err(|e| Error::corrupt(&path, e))?;
        let bat = parts.bat.map_err(|e| Error::corrupt(&path, e))?;
        let header = parts.header;
        let (parent, parent_path) = if kind == Kind::Differencing {
            let (res, found) = chain.parent_of(&path, source.bytes(), &header);
            let parent_path = found.map_err(|e| Error::Parent {
                // A chain too deep is reported against the leaf the user opened.
                path: match e {
                    super::LinkError::TooDeep { .. } => {
                        chain.leaf().map_or_else(|| path.clone(), Path::to_path_buf)
                    }
                    _ => path.clone(),
                },
                what: e.message(&res, &header),
            })?;
            let p = super::open_link(&parent_path, chain)?;
            (Some(p), Some(parent_path))
        } else {
            (None, None)
        };
        Ok(DynamicDisk {
            block_size: u64::from(header.block_size),
            bitmap_size: header.bitmap_size_bytes(),
            size: footer.current_size,
            source,
            kind,
            footer,
            header,
            bat,
            parent,
            parent_path,
        })
    }

    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    pub fn header(&self) -> &DynamicHeader {
        &self.header
    }

    pub fn bat(&self) -> &Bat {
        &self.bat
    }

    /// The file the parent was opened from (a differencing disk).
    pub fn parent_path(&self) -> Option<&Path> {
        self.parent_path.as_deref()
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The sector bitmap and data of an allocated block, checked to lie in the file.
    fn block_bytes(&self, sector: u32) -> Result<(&[u8], u64)> {
        let start = u64::from(sector) * SECTOR_SIZE;
        let bitmap = self
            .source
            .slice(start, self.bitmap_size, "sector bitmap")?;
        Ok((bitmap, start + self.bitmap_size))
    }

    /// What lies under this disk for `offset..offset+len`: the parent's
    /// bytes, or zeros (beyond a smaller parent, or for a dynamic disk).
    fn below(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        let Some(parent) = &self.parent else {
            return Ok(Block::Zero);
        };
        let psize = parent.size_bytes();
        if offset >= psize {
            return Ok(Block::Zero);
        }
        let end = offset + len as u64;
        if end <= psize {
            return parent.range(offset, len);
        }
        let inside = usize::try_from(psize - offset).unwrap_or(len);
        let mut buf = vec![0u8; len];
        parent.range(offset, inside)?.copy_to(&mut buf[..inside]);
        Ok(Block::Owned(buf))
    }

    /// The bytes of one block's part `in_block..in_block+len`.
    fn block_part(&self, block_index: u64, in_block: u64, len: usize) -> Result<Block<'_>> {
        let offset = block_index * self.block_size + in_block;
        let idx = usize::try_from(block_index).unwrap_or(usize::MAX);
        let Some(sector) = self.bat.sector(idx) else {
            return self.below(offset, len);
        };
        let (bitmap, data_start) = self.block_bytes(sector)?;
        let end = in_block + len as u64;
        let first = usize::try_from(in_block / SECTOR_SIZE).unwrap_or(usize::MAX);
        let last = usize::try_from(end.div_ceil(SECTOR_SIZE)).unwrap_or(usize::MAX);
        let bits = (first..last).map(|s| bitmap_bit(bitmap, s));
        let (mut any, mut all) = (false, true);
        for b in bits {
            any |= b;
            all &= b;
        }
        if all {
            let data = self
                .source
                .slice(data_start + in_block, len as u64, "block data")?;
            return Ok(Block::Data(data));
        }
        if !any {
            return self.below(offset, len);
        }
        // Mixed: start from what lies below, then lay this disk's sectors over it.
        let mut buf = vec![0u8; len];
        self.below(offset, len)?.copy_to(&mut buf);
        for s in first..last {
            if !bitmap_bit(bitmap, s) {
                continue;
            }
            let s_start = (s as u64 * SECTOR_SIZE).max(in_block);
            let s_end = ((s as u64 + 1) * SECTOR_SIZE).min(end);
            let data = self
                .source
                .slice(data_start + s_start, s_end - s_start, "block data")?;
            let at = usize::try_from(s_start - in_block).unwrap_or(0);
            buf[at..at + data.len()].copy_from_slice(data);
        }
        Ok(Block::Owned(buf))
    }
}

impl VirtualDisk for DynamicDisk {
    fn path(&self) -> &Path {
        self.source.path()
    }
    fn kind(&self) -> Kind {
        self.kind
    }
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn block_size_bytes(&self) -> u64 {
        self.block_size
    }
    fn parent(&self) -> Option<&dyn VirtualDisk> {
        self.parent.as_deref()
    }
    fn vhd_footer(&self) -> Option<&Footer> {
        Some(&self.footer)
    }
    fn file_size_bytes(&self) -> Option<u64> {
        Some(self.source.len())
    }

    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        let end = check_range(self.path(), offset, len, self.size)?;
        if len == 0 {
            return Ok(Block::Owned(Vec::new()));
        }
        let bs = self.block_size;
        let first = offset / bs;
        if first == (end - 1) / bs {
            return self.block_part(first, offset % bs, len);
        }
        let mut buf = vec![0u8; len];
        let mut at = offset;
        while at < end {
            let in_block = at % bs;
            let n = (bs - in_block).min(end - at);
            let n_usize = usize::try_from(n).unwrap_or(0);
            let dst = usize::try_from(at - offset).unwrap_or(0);
            self.block_part(at / bs, in_block, n_usize)?
                .copy_to(&mut buf[dst..dst + n_usize]);
            at += n;
        }
        Ok(Block::Owned(buf))
    }

    fn is_unallocated(&self, offset: u64, len: u64) -> bool {
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        if len == 0 || end > self.size {
            return false;
        }
        let bs = self.block_size;
        let mut block = offset / bs;
        while block * bs < end {
            let idx = usize::try_from(block).unwrap_or(usize::MAX);
            if self.bat.sector(idx).is_some() {
                return false;
            }
            block += 1;
        }
        match &self.parent {
            None => true,
            Some(p) => {
                offset >= p.size_bytes()
                    || p.is_unallocated(offset, len.min(p.size_bytes() - offset))
            }
        }
    }

    fn release(&self, offset: u64, len: u64) {
        let bs = self.block_size;
        let end = offset.saturating_add(len).min(self.size);
        let mut block = offset / bs;
        while block * bs < end {
            if let Some(sector) = self
                .bat
                .sector(usize::try_from(block).unwrap_or(usize::MAX))
            {
                self.source
                    .release(u64::from(sector) * SECTOR_SIZE, self.bitmap_size + bs);
            }
            block += 1;
        }
        if let Some(p) = &self.parent {
            p.release(offset, len);
        }
    }
}
