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
mod stage;
pub mod stream;
pub mod zero;

use std::collections::VecDeque;
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

/// Writes `plan` into `out` (a new, empty file) and digests the bytes.
/// The writes run on writer threads and their writeback starts as they land
/// (see `stage`), so an fsync after this finds little left to do.
pub fn run(
    plan: &Plan,
    source: &DataSource<'_>,
    out: &std::fs::File,
    out_path: &std::path::Path,
    algos: &[Algo],
    progress: &dyn Progress,
) -> Result<Digests> {
    std::thread::scope(|scope| -> Result<Digests> {
        let mut stage = stage::Stage::start(scope, out, out_path);
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
        stage.finish()?;
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
