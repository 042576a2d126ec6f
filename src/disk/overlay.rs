//! A copy-on-write overlay over a read-only virtual disk, possibly larger
//! than it: what `expand` changes lives here, in memory, and never reaches
//! the input. Reads see the overlay's chunks over the base; beyond the base's
//! size everything reads as zero.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use super::device::{check_range, Device};
use super::{Block, Kind, VirtualDisk};
use crate::Result;

/// Granularity of the overlay: a page (metadata writes are small).
pub const CHUNK_BYTES: u64 = 4096;
const CHUNK: usize = 4096;

/// The overlay, usable as a [`Device`] while planning and as a
/// [`VirtualDisk`] while writing the output.
pub struct Overlay<'a> {
    base: &'a dyn VirtualDisk,
    size: u64,
    chunks: BTreeMap<u64, Box<[u8; CHUNK]>>,
}

impl<'a> Overlay<'a> {
    /// An overlay of `size` bytes (at least the base's size) over `base`.
    pub fn new(base: &'a dyn VirtualDisk, size: u64) -> Overlay<'a> {
        Overlay {
            base,
            size: size.max(base.size_bytes()),
            chunks: BTreeMap::new(),
        }
    }

    pub fn base(&self) -> &dyn VirtualDisk {
        self.base
    }

    /// Reads `buf` from the base (zeros beyond it).
    fn read_base(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bsize = self.base.size_bytes();
        if offset >= bsize {
            buf.fill(0);
            return Ok(());
        }
        let inside = usize::try_from(bsize - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        self.base
            .read_at(offset, &mut buf[..inside])
            .map_err(|e| io::Error::other(e.to_string()))?;
        buf[inside..].fill(0);
        Ok(())
    }

    /// Forgets every change.
    pub fn clear(&mut self) {
        self.chunks.clear();
    }

    /// The changed byte ranges, coalesced: `(offset, len)`.
    pub fn changed_ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for &c in self.chunks.keys() {
            let off = c * CHUNK_BYTES;
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += CHUNK_BYTES,
                _ => out.push((off, CHUNK_BYTES)),
            }
        }
        out
    }

    /// Whether any chunk in `offset..offset+len` was written.
    pub fn touches(&self, offset: u64, len: u64) -> bool {
        if len == 0 {
            return false;
        }
        let first = offset / CHUNK_BYTES;
        let last = (offset + len - 1) / CHUNK_BYTES;
        self.chunks.range(first..=last).next().is_some()
    }

    /// Bytes held in memory.
    pub fn held_bytes(&self) -> u64 {
        self.chunks.len() as u64 * CHUNK_BYTES
    }

    /// The overlay's own bytes for `offset..offset+len`, zeros where
    /// nothing changed (a differencing child's data).
    pub fn changes_only(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let end = offset + len as u64;
        let first = offset / CHUNK_BYTES;
        let last = end.saturating_sub(1) / CHUNK_BYTES;
        for (&c, data) in self.chunks.range(first..=last) {
            let c_start = c * CHUNK_BYTES;
            let from = offset.max(c_start);
            let to = end.min(c_start + CHUNK_BYTES);
            let src = &data[(from - c_start) as usize..(to - c_start) as usize];
            buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
        buf
    }
}

impl Device for Overlay<'_> {
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let end = offset + buf.len() as u64;
        let mut at = offset;
        // Walk the chunks that exist; read the base in between in one go.
        let first = offset / CHUNK_BYTES;
        let last = end.saturating_sub(1) / CHUNK_BYTES;
        for (&c, data) in self.chunks.range(first..=last) {
            let c_start = c * CHUNK_BYTES;
            let from = offset.max(c_start);
            if from > at {
                let (a, b) = ((at - offset) as usize, (from - offset) as usize);
                self.read_base(at, &mut buf[a..b])?;
            }
            let to = end.min(c_start + CHUNK_BYTES);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - c_start) as usize..(to - c_start) as usize]);
            at = to;
        }
        if at < end {
            let a = (at - offset) as usize;
            self.read_base(at, &mut buf[a..])?;
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let bsize = self.base.size_bytes();
        let end = offset + buf.len() as u64;
        let mut at = offset;
        while at < end {
            let c = at / CHUNK_BYTES;
            let c_start = c * CHUNK_BYTES;
            let to = end.min(c_start + CHUNK_BYTES);
            let part = &buf[(at - offset) as usize..(to - offset) as usize];
            if !self.chunks.contains_key(&c) {
                // Zeros written where the disk already reads zero change nothing.
                if c_start >= bsize && part.iter().all(|&b| b == 0) {
                    at = to;
                    continue;
                }
                let mut fresh = Box::new([0u8; CHUNK]);
                self.read_base(c_start, &mut fresh[..])?;
                if fresh[(at - c_start) as usize..(to - c_start) as usize] == *part {
                    at = to;
                    continue;
                }
                self.chunks.insert(c, fresh);
            }
            if let Some(chunk) = self.chunks.get_mut(&c) {
                chunk[(at - c_start) as usize..(to - c_start) as usize].copy_from_slice(part);
            }
            at = to;
        }
        Ok(())
    }
}

impl VirtualDisk for Overlay<'_> {
    fn path(&self) -> &Path {
        self.base.path()
    }
    fn kind(&self) -> Kind {
        self.base.kind()
    }
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn block_size_bytes(&self) -> u64 {
        self.base.block_size_bytes()
    }
    fn range(&self, offset: u64, len: usize) -> Result<Block<'_>> {
        super::check_range(self.path(), offset, len, self.size)?;
        let len64 = len as u64;
        let bsize = self.base.size_bytes();
        if !self.touches(offset, len64) {
            if offset + len64 <= bsize {
                return self.base.range(offset, len);
            }
            if offset >= bsize {
                return Ok(Block::Zero);
            }
        }
        let mut buf = vec![0u8; len];
        Device::read_at(self, offset, &mut buf)
            .map_err(|e| crate::Error::io(self.path(), "read through overlay", e))?;
        Ok(Block::Owned(buf))
    }
    fn is_unallocated(&self, offset: u64, len: u64) -> bool {
        if self.touches(offset, len) {
            return false;
        }
        let bsize = self.base.size_bytes();
        if offset >= bsize {
            return true;
        }
        self.base.is_unallocated(offset, len.min(bsize - offset))
    }
    fn release(&self, offset: u64, len: u64) {
        self.base.release(offset, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::flat::FlatDisk;

    #[test]
    fn overlay_reads_writes_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.raw");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let base = FlatDisk::raw(crate::disk::Source::open(&path).unwrap());
        let mut o = Overlay::new(&base, 20_000);
        let mut buf = [0u8; 4];
        Device::read_at(&o, 9_998, &mut buf).unwrap();
        assert_eq!(buf, [7, 7, 0, 0]);
        o.write_at(4094, &[1, 2, 3, 4]).unwrap();
        Device::read_at(&o, 4093, &mut buf).unwrap();
        assert_eq!(buf, [7, 1, 2, 3]);
        // Zeros beyond the base, and unchanged bytes, store nothing.
        o.write_at(15_000, &[0; 100]).unwrap();
        o.write_at(0, &[7; 10]).unwrap();
        assert_eq!(o.changed_ranges(), vec![(0, 8192)]);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 10_000]);
        assert!(o.write_at(19_999, &[1, 2]).is_err());
        let c = o.changes_only(4090, 10);
        assert_eq!(&c[4..8], &[1, 2, 3, 4]);
        assert_eq!(c[0], 7);
    }
}
