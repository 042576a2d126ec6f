//! Streaming copies: a reader (a tarball member, a pipe) into a new file,
//! leaving zero pages as holes and stopping when the run is interrupted.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::zero::is_zero;
use crate::{Error, Result};

/// Bytes read per step of [`copy_sparse`].
const STEP: usize = 1 << 20;
/// Holes are left at this granularity (the file system's page).
const PAGE: usize = 4096;

/// Whether SIGINT or SIGTERM asked the run to stop (see
/// [`super::stop_on_interrupt`]).
pub fn interrupted() -> bool {
    super::INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The error a reader returns when the run was interrupted; callers map it
/// to [`Error::Interrupted`] by checking [`interrupted`]. (Not
/// `ErrorKind::Interrupted`: `Read` loops retry that one.)
pub fn interrupted_io() -> io::Error {
    io::Error::other("interrupted by a signal")
}

/// Copies `reader` to the start of `out` (a new, empty file at `path`):
/// pages of zeros are not written, so they stay holes, and the file gets the
/// full length at the end. Checks for interruption at every step. Returns
/// the number of bytes copied.
pub fn copy_sparse(reader: &mut dyn Read, out: &File, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; STEP];
    let mut at = 0u64;
    loop {
        if interrupted() {
            return Err(Error::Interrupted);
        }
        let n = fill(reader, &mut buf).map_err(|e| {
            if interrupted() {
                Error::Interrupted
            } else {
                Error::io(path, format!("read the data for offset {at:#x}"), e)
            }
        })?;
        if n == 0 {
            break;
        }
        write_nonzero(out, path, &buf[..n], at)?;
        at += n as u64;
    }
    out.set_len(at)
        .map_err(|e| Error::io(path, format!("set the length to {at}"), e))?;
    Ok(at)
}

/// Reads until `buf` is full or the reader ends.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted && !interrupted() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Writes the runs of non-zero pages of `data` at `at`.
fn write_nonzero(out: &File, path: &Path, data: &[u8], at: u64) -> Result<()> {
    let mut run: Option<usize> = None;
    let mut i = 0;
    while i <= data.len() {
        let zero = i == data.len() || is_zero(&data[i..(i + PAGE).min(data.len())]);
        match (zero, run) {
            (false, None) => run = Some(i),
            (true, Some(from)) => {
                let off = at + from as u64;
                out.write_all_at(&data[from..i], off).map_err(|e| {
                    Error::io(path, format!("write {} bytes at {off:#x}", i - from), e)
                })?;
                run = None;
            }
            _ => {}
        }
        if i == data.len() {
            break;
        }
        i = (i + PAGE).min(data.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_stay_holes_and_data_is_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut data = vec![0u8; 8 << 20];
        data[5000..9000].fill(7);
        data[(6 << 20) + 1] = 1;
        let len = data.len() + 100; // a tail that is not a whole page
        data.resize(len, 0);
        let out = File::create(&path).unwrap();
        let n = copy_sparse(&mut &data[..], &out, &path).unwrap();
        assert_eq!(n, len as u64);
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 1 << 20, "{allocated} bytes allocated");
    }
}
