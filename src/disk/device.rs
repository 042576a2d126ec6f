//! A byte-addressed, writable device: what partition and filesystem code
//! (`partition/`, `fs/`) reads and changes. Deliberately tiny so that the same
//! logic runs over a file in tests, over memory, and over the copy-on-write
//! overlay `expand` uses on top of a read-only virtual disk.

use std::io;

use crate::format::FormatError;

/// A device of fixed size addressed in bytes.
pub trait Device {
    /// Size in bytes.
    fn size_bytes(&self) -> u64;
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `buf` at `offset`; writing past the end is an error.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
}

fn out_of_range(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("access of {len} bytes at {offset:#x} is past the device end ({size:#x})"),
    )
}

/// Checks that `offset..offset+len` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> io::Result<()> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|l| offset.checked_add(l))
        .ok_or_else(|| out_of_range(offset, len, size))?;
    if end > size {
        return Err(out_of_range(offset, len, size));
    }
    Ok(())
}

/// A device held in memory (tests, small images).
#[derive(Debug, Clone, Default)]
pub struct MemDevice {
    pub bytes: Vec<u8>,
}

impl Device for MemDevice {
    fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.size_bytes())?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.size_bytes())?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        self.bytes[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }
}

/// A device over a file (tests work on raw image files this way). The size
/// is fixed when it is opened.
#[derive(Debug)]
pub struct FileDevice {
    file: std::fs::File,
    size: u64,
}

impl FileDevice {
    pub fn new(file: std::fs::File) -> io::Result<FileDevice> {
        let size = file.metadata()?.len();
        Ok(FileDevice { file, size })
    }
}

impl Device for FileDevice {
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)
    }
}

/// A window `start..start+len` of another device (a partition).
pub struct SliceDevice<'a, D: Device + ?Sized> {
    inner: &'a mut D,
    start: u64,
    len: u64,
}

impl<'a, D: Device + ?Sized> SliceDevice<'a, D> {
    pub fn new(inner: &'a mut D, start: u64, len: u64) -> io::Result<SliceDevice<'a, D>> {
        let end = start
            .checked_add(len)
            .ok_or_else(|| out_of_range(start, 0, inner.size_bytes()))?;
        if end > inner.size_bytes() {
            return Err(out_of_range(start, 0, inner.size_bytes()));
        }
        Ok(SliceDevice { inner, start, len })
    }
}

impl<D: Device + ?Sized> Device for SliceDevice<'_, D> {
    fn size_bytes(&self) -> u64 {
        self.len
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.read_at(self.start + offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check_range(offset, buf.len(), self.len)?;
        self.inner.write_at(self.start + offset, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside() {
        let mut mem = MemDevice {
            bytes: vec![0; 4096],
        };
        let mut s = SliceDevice::new(&mut mem, 1024, 1024).unwrap();
        s.write_at(0, &[1, 2, 3]).unwrap();
        assert!(s.write_at(1023, &[1, 2]).is_err());
        assert!(s.read_at(u64::MAX, &mut [0]).is_err());
        assert_eq!(&mem.bytes[1024..1027], &[1, 2, 3]);
        assert!(SliceDevice::new(&mut mem, 4000, 100).is_err());
    }
}

/// What code reading on-disk structures through a [`Device`] (partition
/// tables, filesystems) fails with: the device could not be read or written,
/// a structure is damaged, a structure is valid but not handled, or the
/// device no longer holds what a plan was made against.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("I/O error {operation} at {offset:#x}: {source}")]
    Io {
        operation: &'static str,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// The bytes on the device are damaged.
    #[error("corrupt {0}")]
    Corrupt(FormatError),
    /// The bytes make sense but this is not something we do.
    #[error("unsupported: {0}")]
    Unsupported(FormatError),
    /// Applying a plan found the device no longer matches it, or the result
    /// read back differs from what was planned; `what` names the structure.
    #[error("{when}: {what} expected {expected}, found {found}")]
    Mismatch {
        what: &'static str,
        when: &'static str,
        expected: String,
        found: String,
    },
}

impl DeviceError {
    /// Maps an I/O error of `operation` at byte `offset`.
    pub fn io(operation: &'static str, offset: u64) -> impl FnOnce(io::Error) -> DeviceError {
        move |source| DeviceError::Io {
            operation,
            offset,
            source,
        }
    }

    pub fn corrupt(
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: String,
        expected: String,
    ) -> DeviceError {
        DeviceError::Corrupt(FormatError {
            structure,
            field,
            offset,
            found,
            expected,
        })
    }

    pub fn unsupported(
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: String,
        expected: String,
    ) -> DeviceError {
        DeviceError::Unsupported(FormatError {
            structure,
            field,
            offset,
            found,
            expected,
        })
    }
}

/// Reads `len` bytes at `offset`, `what` naming the structure. Callers bound
/// `len` (a sector, a validated table); one too large for memory is refused.
pub fn read_vec(
    dev: &dyn Device,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, DeviceError> {
    let n = usize::try_from(len).map_err(|_| {
        DeviceError::unsupported(
            what,
            "length",
            offset,
            len.to_string(),
            "an addressable length".into(),
        )
    })?;
    check_range(offset, n, dev.size_bytes()).map_err(DeviceError::io(what, offset))?;
    let mut buf = vec![0u8; n];
    dev.read_at(offset, &mut buf)
        .map_err(DeviceError::io(what, offset))?;
    Ok(buf)
}
