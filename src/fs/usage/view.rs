//! A virtual disk that reads like its base except that the free bytes of a
//! [`DiskMap`] read as zero: what `sparsify` hands to the writer. A range
//! with no free byte is the base's own bytes (no copy); an all-free range is
//! a zero block (never read); a mixed one is copied with its free runs
//! zeroed.

use std::path::Path;

use super::{DiskMap, Run};
use crate::disk::{Block, Kind, VirtualDisk};
use crate::{Error, Result};

/// `base` with the free bytes of `map` reading as zero.
pub struct FreeZeroed<'a> {
    base: &'a dyn VirtualDisk,
    map: &'a DiskMap,
}

impl<'a> FreeZeroed<'a> {
    pub fn new(base: &'a dyn VirtualDisk, map: &'a DiskMap) -> FreeZeroed<'a> {
        FreeZeroed { base, map }
    }

    fn runs(&self, offset: u64, len: u64) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        self.map
            .free_runs(self.base, offset, len, &mut runs)
            .map_err(|e| Error::Unsupported {
                path: self.base.path().to_path_buf(),
                what: format!("free space changed while it was read: {e}"),
            })?;
        Ok(runs)
    }
}

impl VirtualDisk for FreeZeroed<'_> {
    fn path(&self) -> &Path {
        self.base.path()
    }
    fn kind(&self) -> Kind {
        self.base.kind()
    }
    fn size_bytes(&self) -> u64 {
        self.base.size_bytes()
    }
    fn block_size_bytes(&self) -> u64 {
        self.base.block_size_bytes()
    }

    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        let len64 = len as u64;
        let runs = self.runs(offset, len64)?;
        if runs.is_empty() {
            return self.base.range(offset, len);
        }
        if runs.iter().map(|r| r.1).sum::<u64>() == len64 {
            crate::disk::check_range(self.path(), offset, len, self.size_bytes())?;
            return Ok(Block::Zero);
        }
        let mut owned = match self.base.range(offset, len)? {
            Block::Zero => return Ok(Block::Zero),
            Block::Data(d) => d.to_vec(),
            Block::Owned(v) => v,
        };
        for (o, l) in runs {
            // Runs lie inside the window (clipped by the map).
            let from = usize::try_from(o - offset).unwrap_or(len);
            let to = usize::try_from(o + l - offset).unwrap_or(len).min(len);
            if let Some(s) = owned.get_mut(from..to) {
                s.fill(0);
            }
        }
        Ok(Block::Owned(owned))
    }

    fn is_unallocated(&self, offset: u64, len: u64) -> bool {
        if self.base.is_unallocated(offset, len) {
            return true;
        }
        self.runs(offset, len)
            .is_ok_and(|runs| runs.iter().map(|r| r.1).sum::<u64>() == len)
    }

    fn release(&self, offset: u64, len: u64) {
        self.base.release(offset, len);
    }

    fn parent(&self) -> Option<&dyn VirtualDisk> {
        None
    }
}
