//! Which bytes of a disk its filesystems leave free: what `sparsify` may
//! write as zeros without changing a single used byte.
//!
//! One reader per filesystem, each answering "which bytes of this window are
//! free" from the filesystem's own allocation data, read window by window so
//! memory never grows with the disk: ext2/3/4 block bitmaps ([`ext`]), the
//! first FAT of FAT12/16/32 ([`fat`]), NTFS's `$Bitmap` ([`ntfs`]), a Linux
//! swap area ([`swap`]). [`map`] lays a whole disk out (MBR with logical
//! partitions, GPT, or a bare filesystem) into regions that are free, read
//! by one of those readers, or kept exactly as they are, each with the
//! reason; [`view`] is a virtual disk that reads the free bytes as zeros.
//!
//! Nothing here guesses: a filesystem that is dirty, needs recovery, fails a
//! checksum or a consistency rule, or uses a layout a reader does not know is
//! kept whole, and the reason says why. Nothing here writes.

pub mod ext;
pub mod fat;
pub mod map;
pub mod ntfs;
pub mod swap;
pub mod view;

use crate::disk::device::Device;
use crate::disk::VirtualDisk;

pub use map::{map_disk, survey, DiskMap, Region, RegionState};
pub use view::FreeZeroed;

/// A byte range: `(offset, len)`.
pub type Run = (u64, u64);

/// Why a filesystem's free space cannot be read (so the filesystem is kept
/// as it is), or why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A structure holds a value that cannot be right.
    #[error("{structure} at byte {offset:#x}: {field} is {found}, expected {expected}")]
    Corrupt {
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: String,
        expected: String,
    },
    /// A valid layout this reader does not handle.
    #[error("not supported: {what}")]
    Unsupported { what: String },
    /// The filesystem's allocation data may be stale.
    #[error("{why}")]
    Unclean { why: String },
    /// Reading the disk failed.
    #[error("reading {what} at byte {offset:#x}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::fs::ext::Problem> for UsageError {
    fn from(p: crate::fs::ext::Problem) -> UsageError {
        UsageError::Corrupt {
            structure: p.structure,
            field: p.field,
            offset: p.offset,
            found: p.found,
            expected: p.expected,
        }
    }
}

impl UsageError {
    pub(crate) fn corrupt(
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: impl ToString,
        expected: impl ToString,
    ) -> UsageError {
        UsageError::Corrupt {
            structure,
            field,
            offset,
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> UsageError {
        UsageError::Unsupported { what: what.into() }
    }

    pub(crate) fn unclean(why: impl Into<String>) -> UsageError {
        UsageError::Unclean { why: why.into() }
    }
}

/// A filesystem whose allocation data has been read and found consistent.
pub trait FreeSpace: Send + Sync {
    /// "ext4", "fat32", "ntfs", "swap".
    fn name(&self) -> &'static str;
    /// Bytes from the start of the region the filesystem spans.
    fn size_bytes(&self) -> u64;
    /// Appends the free runs inside `start..start + len` (offsets relative
    /// to the filesystem's start), ascending, clipped to the window.
    fn free_runs(
        &self,
        dev: &dyn Device,
        start: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError>;
    /// Reads every piece of allocation data once and checks it is
    /// consistent (checksums, counts, copies); returns the free bytes.
    fn validate(&self, dev: &dyn Device) -> Result<u64, UsageError>;

    /// Free bytes inside `start..start + len`.
    fn free_bytes_in(&self, dev: &dyn Device, start: u64, len: u64) -> Result<u64, UsageError> {
        let mut runs = Vec::new();
        self.free_runs(dev, start, len, &mut runs)?;
        Ok(runs.iter().map(|r| r.1).sum())
    }
}

/// A read-only window `start..start + len` of a virtual disk, as the
/// [`Device`] the filesystem readers read.
pub struct Window<'a> {
    disk: &'a dyn VirtualDisk,
    start: u64,
    len: u64,
}

impl<'a> Window<'a> {
    /// The window, or `None` when it does not lie inside the disk.
    pub fn new(disk: &'a dyn VirtualDisk, start: u64, len: u64) -> Option<Window<'a>> {
        let end = start.checked_add(len)?;
        (end <= disk.size_bytes()).then_some(Window { disk, start, len })
    }
}

impl Device for Window<'_> {
    fn size_bytes(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        crate::disk::device::check_range(offset, buf.len(), self.len)?;
        self.disk
            .read_at(self.start + offset, buf)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
    fn write_at(&mut self, _offset: u64, _buf: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "a sparsify window is read-only",
        ))
    }
}

/// Reads `len` bytes at `offset` of `dev` (callers bound `len`).
pub(crate) fn read(
    dev: &dyn Device,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, UsageError> {
    let mut buf = vec![0u8; len];
    dev.read_at(offset, &mut buf)
        .map_err(|source| UsageError::Io {
            what,
            offset,
            source,
        })?;
    Ok(buf)
}

/// Appends `run` to `out`, merging it with the last run when they touch.
pub(crate) fn push_run(out: &mut Vec<Run>, run: Run) {
    if run.1 == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.0 + last.1 == run.0 {
            last.1 += run.1;
            return;
        }
    }
    out.push(run);
}

/// Appends the part of `unit_start..unit_start + unit_len` inside the
/// window `start..start + len`.
pub(crate) fn push_clipped(
    out: &mut Vec<Run>,
    unit_start: u64,
    unit_len: u64,
    start: u64,
    len: u64,
) {
    let from = unit_start.max(start);
    let to = unit_start
        .saturating_add(unit_len)
        .min(start.saturating_add(len));
    if to > from {
        push_run(out, (from, to - from));
    }
}

/// Whether bit `n` of a little-endian bitmap (bit 0 = least significant bit
/// of byte 0, as ext and NTFS store them) is set; bits past the end are set.
pub(crate) fn bit_set(bits: &[u8], n: u64) -> bool {
    usize::try_from(n / 8)
        .ok()
        .and_then(|i| bits.get(i))
        .is_none_or(|b| b & (1 << (n % 8)) != 0)
}

/// The free runs of a bitmap where a clear bit is a free unit: bits
/// `first..end` of `bits`, bit `n` standing for the `unit` bytes at
/// `base + n * unit`, clipped to `window`. Whole bytes of used units are
/// skipped eight at a time.
pub(crate) fn runs_from_bitmap(
    bits: &[u8],
    (first, end): (u64, u64),
    unit: u64,
    base: u64,
    window: Run,
    out: &mut Vec<Run>,
) {
    let mut n = first;
    while n < end {
        if n % 8 == 0 && end - n >= 8 {
            match usize::try_from(n / 8).ok().and_then(|i| bits.get(i)) {
                Some(0xFF) | None => {
                    n += 8;
                    continue;
                }
                _ => {}
            }
        }
        if bit_set(bits, n) {
            n += 1;
            continue;
        }
        let run_start = n;
        while n < end && !bit_set(bits, n) {
            if n % 8 == 0
                && end - n >= 8
                && usize::try_from(n / 8).ok().and_then(|i| bits.get(i)) == Some(&0)
            {
                n += 8;
            } else {
                n += 1;
            }
        }
        push_clipped(
            out,
            base + run_start * unit,
            (n - run_start) * unit,
            window.0,
            window.1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::device::MemDevice;
    use proptest::prelude::*;

    type Opener = Box<dyn Fn(&MemDevice) -> Result<Option<Box<dyn FreeSpace>>, UsageError>>;

    /// Opens, validates and reads a few windows with every reader; only
    /// errors may come out, never a panic.
    fn read_everything(dev: &MemDevice) {
        let readers: [Opener; 4] = [
            Box::new(|d| Ok(ext::open(d)?.map(|f| Box::new(f) as Box<dyn FreeSpace>))),
            Box::new(|d| Ok(fat::open(d)?.map(|f| Box::new(f) as Box<dyn FreeSpace>))),
            Box::new(|d| Ok(ntfs::open(d)?.map(|f| Box::new(f) as Box<dyn FreeSpace>))),
            Box::new(|d| Ok(swap::open(d)?.map(|f| Box::new(f) as Box<dyn FreeSpace>))),
        ];
        for open in &readers {
            if let Ok(Some(fs)) = open(dev) {
                let _ = fs.validate(dev);
                let mut out = Vec::new();
                for (start, len) in [(0, 4096), (1000, 1 << 20), (u64::MAX - 10, 100)] {
                    let _ = fs.free_runs(dev, start, len, &mut out);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Random bytes with a filesystem's magic planted where its reader
        /// looks first, so that parsing goes past the first check.
        #[test]
        fn readers_never_panic(
            mut bytes in proptest::collection::vec(any::<u8>(), 70_000..140_000),
            magic in 0usize..4,
            patches in proptest::collection::vec((0usize..140_000, any::<u8>()), 0..64),
        ) {
            let planted: &[(usize, &[u8])] = match magic {
                0 => &[(1024 + 0x38, &[0x53, 0xEF]), (1024 + 0x18, &[0, 0, 0, 0])],
                1 => &[(0, &[0xEB, 0x3C, 0x90]), (11, &[0, 2, 4, 1, 0, 2, 0, 2]), (0x36, b"FAT16   "), (510, &[0x55, 0xAA])],
                2 => &[(3, b"NTFS    "), (11, &[0, 2, 8]), (510, &[0x55, 0xAA])],
                _ => &[(4086, b"SWAPSPACE2"), (1024, &[1, 0, 0, 0])],
            };
            for (at, b) in planted {
                bytes[*at..*at + b.len()].copy_from_slice(b);
            }
            let len = bytes.len();
            for (at, v) in patches {
                bytes[at % len] = v;
            }
            read_everything(&MemDevice { bytes });
        }
    }

    #[test]
    fn runs_merge_and_clip() {
        let mut out = Vec::new();
        push_clipped(&mut out, 0, 10, 5, 100);
        push_clipped(&mut out, 10, 10, 5, 100);
        push_clipped(&mut out, 30, 100, 5, 100);
        assert_eq!(out, vec![(5, 15), (30, 75)]);
        let mut runs = Vec::new();
        // Units 1, 2 and 5 free out of 0..6, 4 bytes each from byte 100.
        runs_from_bitmap(&[0b1101_1001], (0, 6), 4, 100, (0, 1000), &mut runs);
        assert_eq!(runs, vec![(104, 8), (120, 4)]);
        // Whole free and used bytes, a window cutting a run.
        let bits = [0xFF, 0x00, 0x00, 0x0F];
        runs.clear();
        runs_from_bitmap(&bits, (0, 32), 1, 0, (0, 1000), &mut runs);
        assert_eq!(runs, vec![(8, 16), (28, 4)]);
        runs.clear();
        runs_from_bitmap(&bits, (0, 32), 1, 0, (10, 5), &mut runs);
        assert_eq!(runs, vec![(10, 5)]);
        // Bits past the bitmap's end are in use.
        runs.clear();
        runs_from_bitmap(&[0], (0, 64), 1, 0, (0, 1000), &mut runs);
        assert_eq!(runs, vec![(0, 8)]);
    }
}
