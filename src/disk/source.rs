//! A read-only input file, memory-mapped. The only place vhdkit maps files
//! (its `unsafe` is the map and the page release; the other `unsafe` in the
//! crate is `bench::measure`'s wait4/getrusage).

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::{Error, Result};

/// An input file opened read-only and mapped whole.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
    len: u64,
}

impl Source {
    /// Opens `path` read-only and maps it.
    pub fn open(path: &Path) -> Result<Source> {
        let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
        Source::from_file(path, file)
    }

    /// Maps `file`, already opened read-only from `path`.
    pub fn from_file(path: &Path, file: File) -> Result<Source> {
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if meta.is_dir() {
            return Err(Error::Usage(format!("{}: is a directory", path.display())));
        }
        let len = meta.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: the file is opened read-only and the map is only ever read.
            // Another process truncating or rewriting the file while vhdkit runs
            // could change what we read (or raise SIGBUS); that is the contract
            // every mmap-based reader has, and vhdkit documents it.
            #[allow(unsafe_code)]
            let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, "mmap", e))?;
            Some(map)
        };
        Ok(Source {
            path: path.to_path_buf(),
            file,
            map,
            len,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The bytes `offset..offset+len`, or an error naming the file if they
    /// are not all inside it.
    pub fn slice(&self, offset: u64, len: u64, what: &str) -> Result<&[u8]> {
        let bytes = self.bytes();
        let start = usize::try_from(offset).ok();
        let n = usize::try_from(len).ok();
        start
            .zip(n)
            .and_then(|(s, n)| bytes.get(s..s.checked_add(n)?))
            .ok_or_else(|| {
                Error::corrupt(
                    &self.path,
                    crate::format::FormatError {
                        structure: "file",
                        field: "length",
                        offset,
                        found: format!("{} bytes in the file", self.len),
                        expected: format!("{len} bytes of {what} at {offset:#x}"),
                    },
                )
            })
    }

    /// Whether `offset..offset+len` of the file is a hole (no data stored),
    /// by SEEK_DATA. Where the file system cannot say, it is data.
    pub fn is_hole(&self, offset: u64, len: u64) -> bool {
        use rustix::fs::{seek, SeekFrom};
        let Some(end) = offset.checked_add(len) else {
            return false;
        };
        if len == 0 || end > self.len {
            return false;
        }
        match seek(&self.file, SeekFrom::Data(offset)) {
            Ok(next_data) => next_data >= end,
            // ENXIO: no data at or after `offset`.
            Err(e) if e == rustix::io::Errno::NXIO => true,
            Err(_) => false,
        }
    }

    /// Drops the mapped pages of `offset..offset+len` from this process
    /// (they are read again from the file if touched), so that streaming a
    /// large image keeps resident memory small.
    pub fn release(&self, offset: u64, len: u64) {
        let Some(map) = &self.map else { return };
        let page = 4096u64;
        let start = offset.next_multiple_of(page);
        let end = offset.saturating_add(len).min(self.len) / page * page;
        if end <= start {
            return;
        }
        let (Ok(start), Ok(n)) = (usize::try_from(start), usize::try_from(end - start)) else {
            return;
        };
        // SAFETY: the mapping is a read-only, shared map of a file; after
        // MADV_DONTNEED its pages are read back from the file on the next
        // access, so no content visible to safe code changes.
        #[allow(unsafe_code)]
        let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, n) };
    }

    /// Tells the kernel the map will be read in order.
    pub fn advise_sequential(&self) {
        if let Some(map) = &self.map {
            let _ = map.advise(Advice::Sequential);
        }
    }
}
