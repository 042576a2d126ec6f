//! A read-only input file, memory-mapped. The only place vhdkit maps files
//! (its `unsafe` is the map, the page release and the SIGBUS handler below;
//! the other `unsafe` in the crate is `bench::measure`'s wait4/getrusage).
//!
//! An input can change while it is read (a copy still arriving on a shared
//! folder, a build rewriting its output). A read past a shrunken end raises
//! SIGBUS; the handler maps zero pages over the rest of that input's map,
//! marks the input changed and lets the read go on. Every [`Source`] is also
//! `fstat`ed again when it is dropped and before an output is committed
//! ([`check_inputs`]): a different size or modification time, or a SIGBUS,
//! makes the run fail with "changed while it was being read", whatever it
//! computed from the bytes it saw.
//!
//! Inputs are opened with `O_NONBLOCK` and then `fstat`ed, so opening a FIFO
//! without a writer never blocks; anything but a regular file is refused
//! (`checksum` streams pipes itself, see [`open_stream`]).

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use memmap2::{Advice, Mmap, UncheckedAdvice};

use crate::{Error, Result};

/// An input file opened read-only and mapped whole.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    file: File,
    map: Option<Mmap>,
    len: u64,
    mtime: (i64, i64),
    slot: Option<usize>,
    live: u64,
}

/// Opens `path` read-only without blocking (a FIFO without a writer, a
/// terminal) and returns it with its metadata.
fn open_nonblocking(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    Ok((file, meta))
}

/// What a non-regular file is, for messages ("a pipe (FIFO)", "a
/// character device", ...).
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a pipe (FIFO)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading in order: a regular file as is, a pipe,
/// terminal or character device switched back to blocking reads. Nothing
/// here blocks in `open()`. `-` is standard input.
pub fn open_stream(path: &Path) -> Result<(File, Option<u64>)> {
    if path.as_os_str() == "-" {
        use std::os::fd::AsFd;
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io(path, "duplicate standard input", e))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        let len = meta.is_file().then_some(meta.len());
        return Ok((file, len));
    }
    let (file, meta) = open_nonblocking(path)?;
    if meta.is_dir() {
        return Err(Error::Usage(format!("{}: is a directory", path.display())));
    }
    // Our own open file description: clearing O_NONBLOCK affects no one else.
    let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| Error::io(path, "fcntl", e.into()))?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| Error::io(path, "fcntl", e.into()))?;
    let len = meta.is_file().then_some(meta.len());
    Ok((file, len))
}

impl Source {
    /// Opens `path` read-only and maps it. Refuses anything but a regular
    /// file: every command but `checksum` needs random access.
    pub fn open(path: &Path) -> Result<Source> {
        let (file, _) = open_nonblocking(path)?;
        Source::from_file(path, file)
    }

    /// Maps `file`, already opened read-only (without blocking) from `path`.
    /// Refuses anything but a regular file.
    pub fn from_file(path: &Path, file: File) -> Result<Source> {
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if meta.is_dir() {
            return Err(Error::Usage(format!("{}: is a directory", path.display())));
        }
        if !meta.is_file() {
            return Err(Error::Usage(format!(
                "{}: is {}; this command reads images by random access and needs a regular file \
                 (copy the stream to a file first; `vhdkit checksum` reads pipes and `-`)",
                path.display(),
                file_kind(&meta)
            )));
        }
        let len = meta.len();
        let mtime = (meta.mtime(), meta.mtime_nsec());
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
        let slot = map
            .as_ref()
            .and_then(|m| guard(m.as_ptr() as usize, m.len()));
        let live = NEXT_LIVE.fetch_add(1, Ordering::SeqCst);
        if let (Ok(dup), Ok(mut all)) = (file.try_clone(), LIVE.lock()) {
            all.push(Live {
                id: live,
                slot,
                path: path.to_path_buf(),
                file: dup,
                len,
                mtime,
            });
        }
        Ok(Source {
            path: path.to_path_buf(),
            file,
            map,
            len,
            mtime,
            slot,
            live,
        })
    }

    /// Fails with "changed while it was being read" if the file's size or
    /// modification time differ from when it was opened, or a read found
    /// its end gone (SIGBUS).
    pub fn check_unchanged(&self) -> Result<()> {
        unchanged(
            &self.path,
            &self.file,
            self.len,
            self.mtime,
            faulted(self.slot),
        )
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

    /// Tells the kernel the map will be read in order (the zero-page map of
    /// a shrunken input is left alone).
    pub fn advise_sequential(&self) {
        if let Some(map) = &self.map {
            let _ = map.advise(Advice::Sequential);
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        // A change found here is kept for `take_changed`.
        let _ = self.check_unchanged();
        if let Ok(mut all) = LIVE.lock() {
            all.retain(|l| l.id != self.live);
        }
        if let Some(s) = self.slot.and_then(|i| SLOTS.get(i)) {
            s.start.store(0, Ordering::SeqCst);
            s.end.store(0, Ordering::SeqCst);
            s.hit.store(false, Ordering::SeqCst);
            s.used.store(false, Ordering::SeqCst);
        }
    }
}

/// An open input, `fstat`ed again before an output is committed.
struct Live {
    id: u64,
    slot: Option<usize>,
    path: PathBuf,
    file: File,
    len: u64,
    mtime: (i64, i64),
}

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());
static NEXT_LIVE: AtomicU64 = AtomicU64::new(0);
/// The first input found changed, kept until the binary reports it.
static CHANGED: Mutex<Option<(PathBuf, u64, u64)>> = Mutex::new(None);

/// Whether a read of the map in `slot` faulted (SIGBUS).
fn faulted(slot: Option<usize>) -> bool {
    slot.and_then(|i| SLOTS.get(i))
        .is_some_and(|s| s.hit.load(Ordering::SeqCst))
}

/// `Ok` if `file` still has the size and modification time it had when
/// opened and no read of it faulted.
fn unchanged(path: &Path, file: &File, len: u64, mtime: (i64, i64), faulted: bool) -> Result<()> {
    let m = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    if faulted || m.len() != len || (m.mtime(), m.mtime_nsec()) != mtime {
        remember_changed(path, m.len(), len);
        return Err(changed(path, m.len(), len));
    }
    Ok(())
}

fn remember_changed(path: &Path, now: u64, was: u64) {
    if let Ok(mut first) = CHANGED.lock() {
        first.get_or_insert((path.to_path_buf(), now, was));
    }
}

/// The error of an input that changed while it was read.
fn changed(path: &Path, now: u64, was: u64) -> Error {
    Error::Io {
        path: PathBuf::new(),
        op: format!(
            "{} changed while it was being read (now {now} bytes, was {was})",
            path.display()
        ),
        source: std::io::Error::other("the input must not change during a run"),
    }
}

/// The first input found changed during the run (by a SIGBUS, or when its
/// [`Source`] was re-checked or dropped), as an error. Called by the binary
/// before it reports success.
pub fn take_changed() -> Result<()> {
    match CHANGED.lock().ok().and_then(|mut c| c.take()) {
        Some((path, now, was)) => Err(changed(&path, now, was)),
        None => Ok(()),
    }
}

/// Every input opened during the run unchanged: the open ones `fstat`ed
/// again, the closed ones as found when closed. Called before an output
/// is committed.
pub fn check_inputs() -> Result<()> {
    if let Some((path, now, was)) = CHANGED.lock().ok().and_then(|c| c.clone()) {
        return Err(changed(&path, now, was));
    }
    let Ok(all) = LIVE.lock() else {
        return Ok(());
    };
    for l in all.iter() {
        unchanged(&l.path, &l.file, l.len, l.mtime, faulted(l.slot))?;
    }
    Ok(())
}

/// A mapped range the SIGBUS handler may patch.
struct Slot {
    used: AtomicBool,
    start: AtomicUsize,
    end: AtomicUsize,
    hit: AtomicBool,
}

const SLOT_COUNT: usize = 64;
static SLOTS: [Slot; SLOT_COUNT] = [const {
    Slot {
        used: AtomicBool::new(false),
        start: AtomicUsize::new(0),
        end: AtomicUsize::new(0),
        hit: AtomicBool::new(false),
    }
}; SLOT_COUNT];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: std::sync::Once = std::sync::Once::new();

/// Registers a map with the SIGBUS handler (installed on first use).
/// `None` when all slots are taken: that map is then only re-`fstat`ed.
fn guard(start: usize, len: usize) -> Option<usize> {
    INSTALL.call_once(install);
    let end = start.checked_add(len)?;
    let i = SLOTS.iter().position(|s| {
        s.used
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })?;
    let s = SLOTS.get(i)?;
    s.hit.store(false, Ordering::SeqCst);
    s.end.store(end, Ordering::SeqCst);
    s.start.store(start, Ordering::SeqCst);
    Some(i)
}

fn install() {
    // SAFETY: sysconf and sigaction with a zeroed, then filled, sigaction
    // struct; the handler only makes async-signal-safe calls (mmap, signal)
    // and atomic operations.
    #[allow(unsafe_code)]
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if let Ok(p) = usize::try_from(page) {
            if p.is_power_of_two() {
                PAGE.store(p, Ordering::SeqCst);
            }
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

/// SIGBUS: a read of a mapped input past its (new) end. Maps zero pages
/// from the faulting page to the end of that map, marks it, and returns so
/// the read sees zeros; a SIGBUS anywhere else gets the default action.
#[allow(unsafe_code)]
extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::SeqCst);
    for s in &SLOTS {
        let (start, end) = (s.start.load(Ordering::SeqCst), s.end.load(Ordering::SeqCst));
        if start == 0 || addr < start || addr >= end {
            continue;
        }
        let from = addr & !(page - 1);
        let len = (end - from).next_multiple_of(page);
        // SAFETY: `from..from+len` lies inside a live read-only map of ours
        // (the slot is cleared before the map is dropped); replacing those
        // pages with anonymous zero pages changes nothing safe code relies on
        // beyond the bytes read, which are then reported as not trusted.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            s.hit.store(true, Ordering::SeqCst);
            return;
        }
    }
    // SAFETY: restoring the default action; the fault then repeats and ends
    // the process as before.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}
