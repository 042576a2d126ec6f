//! Gathers the output's contiguous bytes into large page-aligned writes and
//! hands them to writer threads, so the kernel's copies into the page cache
//! run on every core while the next bytes are gathered and digested.
//!
//! Writes land at their own offsets of a new, empty file, so their order does
//! not matter; whole zero pages are left as holes (a hole reads as the zeros
//! it stands for). Each written range's writeback is started at once
//! (`sync_file_range`), and a few writes later waited for and its pages
//! dropped, whether or not the output will be fsynced: a multi-gigabyte
//! output never floods the page cache (nor evicts what other programs
//! cached), the final fsync finds little left, and the same few MiB of
//! page cache are reused instead of new pages taken for every write (on
//! this project's virtual machine, first-touch pages cost more than the
//! disk write).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use crate::{Error, Result};

/// Bytes gathered before one write: page-aligned, whole-page writes spare the
/// kernel from zeroing partial pages (a VHD's data is 512 bytes off pages).
const STAGE_BYTES: usize = 2 << 20;
/// Writer threads (the machine's cores, at most this many).
const MAX_WRITERS: usize = 4;
const PAGE: usize = 4096;

/// One staged write: the file offset and its bytes.
type Job = (u64, Vec<u8>);

/// The gathering end; writes happen on the writer threads.
pub(super) struct Stage<'scope, 'f> {
    path: &'f Path,
    buf: Vec<u8>,
    start: u64,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Vec<u8>>,
    failed: Arc<Mutex<Option<Error>>>,
    writers: Vec<ScopedJoinHandle<'scope, ()>>,
}

impl<'scope, 'f: 'scope> Stage<'scope, 'f> {
    /// Starts the writer threads on `scope`, writing into `file` (a new,
    /// empty file at `path`).
    pub(super) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        file: &'f std::fs::File,
        path: &'f Path,
    ) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WRITERS);
        let (jobs, queue) = sync_channel::<Job>(1);
        let queue = Arc::new(Mutex::new(queue));
        // Buffers: one per writer, one queued, one being filled (resident
        // memory stays small: (n + 2) × 2 MiB).
        let (give, free) = sync_channel::<Vec<u8>>(n + 2);
        for _ in 0..n + 1 {
            let _ = give.send(Vec::with_capacity(STAGE_BYTES));
        }
        let failed = Arc::new(Mutex::new(None));
        let writers = (0..n)
            .map(|_| {
                let queue = Arc::clone(&queue);
                let give = give.clone();
                let failed = Arc::clone(&failed);
                scope.spawn(move || writer(file, path, &queue, &give, &failed))
            })
            .collect();
        Stage {
            path,
            buf: Vec::with_capacity(STAGE_BYTES),
            start: 0,
            jobs: Some(jobs),
            free,
            failed,
            writers,
        }
    }

    /// Stages `bytes` for file offset `at`.
    pub(super) fn put(&mut self, at: u64, mut bytes: &[u8]) -> Result<()> {
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

    /// Hands the gathered bytes to a writer.
    fn flush(&mut self) -> Result<()> {
        self.take_failure()?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self.free.recv().map_err(|_| self.writers_gone())?;
        let full = std::mem::replace(&mut self.buf, next);
        let at = self.start;
        self.start += full.len() as u64;
        let jobs = self.jobs.as_ref().ok_or_else(|| self.writers_gone())?;
        jobs.send((at, full)).map_err(|_| self.writers_gone())?;
        Ok(())
    }

    /// Writes what is left and waits for every write; the first failure is
    /// returned.
    pub(super) fn finish(mut self) -> Result<()> {
        let flushed = self.flush();
        self.jobs = None;
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
        flushed?;
        self.take_failure()
    }

    fn take_failure(&self) -> Result<()> {
        match self.failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn writers_gone(&self) -> Error {
        if let Ok(Some(e)) = self.failed.lock().map(|mut f| f.take()) {
            return e;
        }
        Error::io(
            self.path,
            "write (a writer thread ended)",
            std::io::Error::other("writer thread gone"),
        )
    }
}

impl Drop for Stage<'_, '_> {
    fn drop(&mut self) {
        // An early return: let the writers see the end of the queue.
        self.jobs = None;
    }
}

/// A writer thread: takes staged writes until the queue ends; after a
/// failure it only returns the buffers.
fn writer(
    file: &std::fs::File,
    path: &Path,
    queue: &Mutex<Receiver<Job>>,
    give: &SyncSender<Vec<u8>>,
    failed: &Mutex<Option<Error>>,
) {
    let mut behind = Behind::default();
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok((at, mut buf)) = job else { return };
        let ok = failed.lock().map(|f| f.is_none()).unwrap_or(false);
        if ok {
            match write_nonzero(file, path, at, &buf) {
                Ok(()) => behind.written(file, at, buf.len() as u64),
                Err(e) => {
                    if let Ok(mut f) = failed.lock() {
                        f.get_or_insert(e);
                    }
                }
            }
        }
        buf.clear();
        let _ = give.try_send(buf);
    }
}

/// Ranges a writer wrote whose writeback has started; once a range is this
/// many writes old, the writer waits for its writeback and drops its pages,
/// so the page cache holds a few MiB of the output, not all of it.
const LAG: usize = 4;

#[derive(Default)]
struct Behind {
    ranges: std::collections::VecDeque<(u64, u64)>,
}

impl Behind {
    fn written(&mut self, file: &std::fs::File, at: u64, len: u64) {
        writeback(file, at, len, false);
        self.ranges.push_back((at, len));
        while self.ranges.len() > LAG {
            if let Some((at, len)) = self.ranges.pop_front() {
                writeback(file, at, len, true);
                let _ = rustix::fs::fadvise(
                    file,
                    at,
                    std::num::NonZeroU64::new(len),
                    rustix::fs::Advice::DontNeed,
                );
            }
        }
    }
}

/// Starts the writeback of `at..at+len` (and with `wait`, waits for it).
/// Failures are left to the final fsync, or to nobody with `--no-sync`,
/// exactly as without this call.
fn writeback(file: &std::fs::File, at: u64, len: u64, wait: bool) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    // SAFETY: a plain system call on an open descriptor, no memory passed.
    #[allow(unsafe_code)]
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), at, len, flags) };
}

/// Writes the runs of non-zero pages of `buf` at file offset `at` (page
/// boundaries of the file, not of the buffer).
fn write_nonzero(file: &std::fs::File, path: &Path, at: u64, buf: &[u8]) -> Result<()> {
    let mut run: Option<usize> = None;
    let misalign = usize::try_from(at % PAGE as u64).unwrap_or(0);
    let mut i = 0usize;
    let mut next = (PAGE - misalign).min(buf.len());
    while i < buf.len() {
        let zero = super::zero::is_zero(&buf[i..next]);
        match (zero, run) {
            (false, None) => run = Some(i),
            (true, Some(from)) => {
                write_run(file, path, at, &buf[from..i], from)?;
                run = None;
            }
            _ => {}
        }
        i = next;
        next = (next + PAGE).min(buf.len());
    }
    if let Some(from) = run {
        write_run(file, path, at, &buf[from..], from)?;
    }
    Ok(())
}

fn write_run(
    file: &std::fs::File,
    path: &Path,
    base: u64,
    bytes: &[u8],
    from: usize,
) -> Result<()> {
    let at = base + from as u64;
    file.write_all_at(bytes, at).map_err(|e| {
        Error::io(
            path,
            format!(
                "write {} bytes at {at:#x} (the partial output was removed)",
                bytes.len()
            ),
            e,
        )
    })
}
