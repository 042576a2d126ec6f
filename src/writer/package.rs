//! The XenServer package: a chain's links written as `0.vhd` … into the
//! gzipped tarball Glance stores for `container_format=ovf`, through an
//! [`Output`] and digested as it is written.

use std::io::{Read, Write};
use std::path::Path;

use super::Output;
use crate::pipeline::digest::{Algo, DigestSink, DigestWriter, Digests};
use crate::pipeline::Progress;
use crate::{Error, Result};

/// One file of the package: its path, and its name in the tarball.
pub struct Member<'a> {
    pub path: &'a Path,
    pub name: String,
}

/// Buffer between the tar writer and the output.
const WRITE_BUFFER: usize = 1 << 20;

/// Counts the bytes read through it as progress.
struct Counted<'p, R> {
    inner: R,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::pipeline::stream::interrupted() {
            return Err(crate::pipeline::stream::interrupted_io());
        }
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Writes `members` into a gzipped tarball on `out`; progress counts the
/// members' bytes read.
fn write_tarball(members: &[Member<'_>], out: impl Write, progress: &dyn Progress) -> Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    for m in members {
        let file = std::fs::File::open(m.path).map_err(|e| Error::io(m.path, "open", e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(m.path, "stat", e))?
            .len();
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append_data(
                &mut header,
                &m.name,
                Counted {
                    inner: file,
                    progress,
                },
            )
            .map_err(|e| Error::io(m.path, "add to tarball", e))?;
    }
    let gz = builder
        .into_inner()
        .map_err(|e| Error::io(Path::new(""), "finish tarball", e))?;
    let mut inner = gz
        .finish()
        .map_err(|e| Error::io(Path::new(""), "finish gzip", e))?;
    inner
        .flush()
        .map_err(|e| Error::io(Path::new(""), "flush", e))?;
    Ok(())
}

/// Writes `members` as a gzipped tarball at `out` (temporary file, synced
/// unless `no_sync`, renamed) and returns the digests of the bytes written.
/// `inputs` are refused as `out`.
pub fn write_package(
    members: &[Member<'_>],
    out: &Path,
    inputs: &[&Path],
    no_sync: bool,
    progress: &dyn Progress,
) -> Result<Digests> {
    let output = Output::create(out, inputs)?.no_sync(no_sync);
    let digests = std::thread::scope(|scope| -> Result<Digests> {
        let mut sink = DigestSink::start(scope, &[Algo::Md5, Algo::Sha512]);
        {
            let writer = DigestWriter::new(output.file(), output.temp_path(), &mut sink);
            write_tarball(
                members,
                std::io::BufWriter::with_capacity(WRITE_BUFFER, writer),
                progress,
            )?;
        }
        Ok(sink.finish())
    });
    if crate::pipeline::stream::interrupted() {
        return Err(Error::Interrupted);
    }
    let digests = digests?;
    output.commit()?;
    Ok(digests)
}
