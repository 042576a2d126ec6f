//! Raw disks and fixed VHDs: the data is the file (less the footer).

use std::path::Path;

use super::{check_range, Block, Kind, Source, VirtualDisk};
use crate::format::{Footer, Layout};
use crate::{Error, Result};

/// The allocation unit reported for flat files: holes are found at any
/// granularity, this is only what readers step by.
pub const FLAT_BLOCK_SIZE: u64 = 2 << 20;

/// A raw disk or a fixed VHD.
#[derive(Debug)]
pub struct FlatDisk {
    source: Source,
    kind: Kind,
    size: u64,
    footer: Option<Footer>,
}

impl FlatDisk {
    /// The whole file is the disk.
    pub fn raw(source: Source) -> FlatDisk {
        let size = source.len();
        FlatDisk {
            source,
            kind: Kind::Raw,
            size,
            footer: None,
        }
    }

    /// A fixed VHD: the data before the footer; its size must match the
    /// footer's current size.
    pub fn fixed(source: Source) -> Result<FlatDisk> {
        let layout = Layout::parse(source.bytes()).ok_or_else(|| Error::Unsupported {
            path: source.path().to_path_buf(),
            what: "no VHD footer".into(),
        })?;
        let footer = layout
            .tail_footer
            .clone()
            .map_err(|e| Error::corrupt(source.path(), e))?;
        let data_len = layout.footer_offset;
        if footer.current_size != data_len {
            return Err(Error::corrupt(
                source.path(),
                crate::format::FormatError {
                    structure: "footer",
                    field: "current size",
                    offset: layout.footer_offset + 48,
                    found: footer.current_size.to_string(),
                    expected: format!("{data_len} (the data before the footer of a fixed disk)"),
                },
            ));
        }
        Ok(FlatDisk {
            source,
            kind: Kind::Fixed,
            size: data_len,
            footer: Some(footer),
        })
    }

    pub fn footer(&self) -> Option<&Footer> {
        self.footer.as_ref()
    }

    pub fn source(&self) -> &Source {
        &self.source
    }
}

impl VirtualDisk for FlatDisk {
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
        FLAT_BLOCK_SIZE
    }
    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        check_range(self.path(), offset, len, self.size)?;
        let len64 = len as u64;
        if self.source.is_hole(offset, len64) {
            return Ok(Block::Zero);
        }
        Ok(Block::Data(self.source.slice(
            offset,
            len64,
            "disk data",
        )?))
    }
    fn is_unallocated(&self, offset: u64, len: u64) -> bool {
        self.source.is_hole(offset, len)
    }
    fn release(&self, offset: u64, len: u64) {
        self.source.release(offset, len);
    }
    fn vhd_footer(&self) -> Option<&Footer> {
        self.footer.as_ref()
    }
    fn file_size_bytes(&self) -> Option<u64> {
        Some(self.source.len())
    }
}
