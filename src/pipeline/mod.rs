//! The conversion pipeline: plan, then run.
//!
//! *Plan* ([`plan`]) classifies every output block as zero or data, in
//! parallel (rayon), and lays the output file out as plain data: a list of
//! [`Piece`]s in file order (metadata bytes, data blocks with their virtual
//! source, holes). No output I/O happens there.
//!
//! *Run* ([`run`]) walks the pieces in order, writes each at its known offset
//! and feeds the same bytes, in file order, to one digest thread per
//! algorithm ([`digest`]). MD5 is serial and sets the pace; writing and
//! SHA-512 hide behind it. Mapped input pages are released as soon as every
//! consumer is done with them, so resident memory stays small whatever the
//! image size.

pub mod digest;
pub mod plan;
pub mod zero;

use std::collections::VecDeque;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::disk::{Block, VirtualDisk};
use crate::{Error, Result};
use digest::{Algo, Chunk, DigestSink, Digests};
pub use plan::{Piece, Plan};

/// Zeros fed to the digests for holes and padding.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// `len` zero bytes (at most 1 MiB) from a static buffer.
pub fn zeros(len: usize) -> &'static [u8] {
    &ZEROS[..len.min(ZEROS.len())]
}

/// Set by SIGINT/SIGTERM (see [`stop_on_interrupt`]) to stop a run; the
/// output's temporary file is then removed and nothing reaches the target.
pub static INTERRUPTED: std::sync::LazyLock<Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Makes SIGINT and SIGTERM stop a running command cleanly (a second signal
/// ends the process at once, with status 130).
pub fn stop_on_interrupt() -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&INTERRUPTED))?;
        signal_hook::flag::register(sig, Arc::clone(&INTERRUPTED))?;
    }
    Ok(())
}

/// Where a data piece's bytes come from.
pub enum DataSource<'a> {
    /// The virtual disk.
    Disk(&'a dyn VirtualDisk),
    /// Raw bytes of a file (compacting a differencing disk keeps its own sectors).
    File(&'a crate::disk::Source),
}

/// Reports progress (bytes of output done).
pub trait Progress: Sync {
    /// `bytes` more bytes are done (called from worker threads).
    fn advance(&self, bytes: u64);
}

/// No progress display.
pub struct NoProgress;
impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}

fn feed_zeros(sink: &mut DigestSink<'_>, mut len: u64) {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64);
        sink.feed(Chunk::Borrowed(&ZEROS[..n as usize]));
        len -= n;
    }
}

/// Bytes gathered before one write: page-aligned, whole-page writes spare the
/// kernel from zeroing partial pages (a VHD's data is 512 bytes off pages).
const STAGE_BYTES: usize = 4 << 20;

/// Gathers contiguous output into large writes.
struct Stage<'f> {
    file: &'f std::fs::File,
    path: &'f std::path::Path,
    buf: Vec<u8>,
    start: u64,
    /// Start writeback of each staged write (for an output that will be
    /// fsynced); off for `--no-sync`, where the page cache keeps it.
    early_writeback: bool,
}

impl Stage<'_> {
    fn put(&mut self, at: u64, mut bytes: &[u8]) -> Result<()> {
        if at != self.start + self.buf.len() as u64 {
            self.flush()?;
            self.start = at;
        }
        while !bytes.is_empty() {
            let room = STAGE_BYTES - self.buf.len();
            let n = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.buf.len() == STAGE_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Writes the gathered bytes, leaving whole zero pages as holes (the
    /// output is a new, empty file, so a hole reads as the zeros it stands
    /// for): sparse outputs, and no I/O for the zero sectors of a block.
    fn flush(&mut self) -> Result<()> {
        const PAGE: usize = 4096;
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut run: Option<usize> = None;
        let mut at = 0usize;
        // Page boundaries of the file, not of the buffer.
        let misalign = usize::try_from(self.start % PAGE as u64).unwrap_or(0);
        let mut next = (PAGE - misalign).min(self.buf.len());
        while at < self.buf.len() {
            let page = &self.buf[at..next];
            let zero = zero::is_zero(page);
            match (zero, run) {
                (false, None) => run = Some(at),
                (true, Some(from)) => {
                    self.write_run(from, at)?;
                    run = None;
                }
                _ => {}
            }
            at = next;
            next = (next + PAGE).min(self.buf.len());
        }
        if let Some(from) = run {
            self.write_run(from, self.buf.len())?;
        }
        // Start writeback of what was just written, so the disk works while
        // the rest is read and hashed and the final fsync finds little left
        // to do (POSIX_FADV_DONTNEED writes dirty pages back asynchronously).
        if self.early_writeback {
            let _ = rustix::fs::fadvise(
                self.file,
                self.start,
                std::num::NonZeroU64::new(self.buf.len() as u64),
                rustix::fs::Advice::DontNeed,
            );
        }
        self.start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn write_run(&self, from: usize, to: usize) -> Result<()> {
        let at = self.start + from as u64;
        self.file
            .write_all_at(&self.buf[from..to], at)
            .map_err(|e| {
                Error::io(
                    self.path,
                    format!(
                        "write {} bytes at {at:#x} (the partial output was removed)",
                        to - from
                    ),
                    e,
                )
            })
    }
}

/// Writes `plan` into `out` (a new, empty file) and digests the bytes,
/// starting writeback as it goes (the output is to be fsynced).
pub fn run(
    plan: &Plan,
    source: &DataSource<'_>,
    out: &std::fs::File,
    out_path: &std::path::Path,
    algos: &[Algo],
    progress: &dyn Progress,
) -> Result<Digests> {
    run_with(plan, source, out, out_path, algos, progress, true)
}

/// [`run`], with early writeback only when `early_writeback` (an output
/// that will be fsynced: the final fsync then finds little left to do;
/// without one, writeback would only slow the run down).
pub fn run_with(
    plan: &Plan,
    source: &DataSource<'_>,
    out: &std::fs::File,
    out_path: &std::path::Path,
    algos: &[Algo],
    progress: &dyn Progress,
    early_writeback: bool,
) -> Result<Digests> {
    let mut stage = Stage {
        file: out,
        path: out_path,
        buf: Vec::with_capacity(STAGE_BYTES),
        start: 0,
        early_writeback,
    };
    std::thread::scope(|scope| -> Result<Digests> {
        let mut sink = DigestSink::start(scope, algos);
        // (file end, source offset, len) of data still held by digests.
        let mut held: VecDeque<(u64, u64, u64)> = VecDeque::new();
        let release = |off: u64, len: u64| match source {
            DataSource::Disk(d) => d.release(off, len),
            DataSource::File(s) => s.release(off, len),
        };
        for piece in &plan.pieces {
            if INTERRUPTED.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            match piece {
                Piece::Meta { file_offset, bytes } => {
                    stage.put(*file_offset, bytes)?;
                    sink.feed(Chunk::Shared(Arc::clone(bytes)));
                    progress.advance(bytes.len() as u64);
                }
                Piece::Hole { len, .. } => {
                    feed_zeros(&mut sink, *len);
                    progress.advance(*len);
                }
                Piece::Data {
                    file_offset,
                    source_offset,
                    len,
                    pad,
                } => {
                    let n = usize::try_from(*len).map_err(|_| {
                        Error::unsupported(
                            Path::new(""),
                            format!("a {len}-byte block on this platform"),
                        )
                    })?;
                    let chunk = match source {
                        DataSource::Disk(d) => match d.range(*source_offset, n)? {
                            Block::Zero => None,
                            Block::Data(s) => Some(Chunk::Borrowed(s)),
                            Block::Owned(v) => Some(Chunk::Shared(Arc::from(v))),
                        },
                        DataSource::File(s) => Some(Chunk::Borrowed(s.slice(
                            *source_offset,
                            *len,
                            "block data",
                        )?)),
                    };
                    match chunk {
                        Some(c) => {
                            stage.put(*file_offset, c.bytes())?;
                            sink.feed(c);
                        }
                        None => feed_zeros(&mut sink, *len),
                    }
                    feed_zeros(&mut sink, *pad);
                    held.push_back((file_offset + len + pad, *source_offset, *len));
                    progress.advance(len + pad);
                }
            }
            let done = sink.consumed();
            while held.front().is_some_and(|h| h.0 <= done) {
                if let Some((_, off, len)) = held.pop_front() {
                    release(off, len);
                }
            }
        }
        stage.flush()?;
        out.set_len(plan.file_size)
            .map_err(|e| Error::io(out_path, "set length", e))?;
        let digests = sink.finish();
        for (_, off, len) in held {
            release(off, len);
        }
        if let DataSource::File(s) = source {
            s.check_unchanged()?;
        }
        crate::disk::source::check_inputs()?;
        Ok(digests)
    })
}
