//! The store folder beside the database: image data kept by content,
//! `objects/<first two hex digits>/<SHA-512 hex>`, read-only, each stored
//! once however many images share it.
//!
//! An add writes `tmp/<id>.part` while it holds an exclusive lock on
//! `tmp/<id>.lock`; the lock dies with its process, so a file in `tmp/`
//! whose lock can be taken belongs to an add that was killed. The data goes
//! in by a reflink clone (FICLONE) where the filesystem shares extents, else
//! by `copy_file_range` over the data regions only (holes stay holes).
//! Removing objects takes `gc.lock` exclusively; an add holds it shared from
//! the moment its record names an object until the record is active.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use rustix::fs::{flock, FlockOperation};
use serde::Serialize;

use crate::pipeline::INTERRUPTED;
use crate::Error;

/// How an image's data came into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A copy-on-write clone of the file's extents: no data copied.
    Reflink,
    /// Copied by the kernel (`copy_file_range`), holes skipped.
    Copy,
    /// The same data was already stored.
    Existing,
    /// Not stored: only the path is kept.
    Reference,
}

/// Bytes copied per `copy_file_range` call (then writeback is started).
const COPY_STEP: usize = 64 << 20;
/// A `.new` lock file younger than this may belong to an add starting now.
const NEW_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The store folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn io_err<'p>(path: &'p Path, op: &str) -> impl FnOnce(io::Error) -> Error + 'p {
    let op = op.to_string();
    move |e| Error::io(path, op, e)
}

impl Store {
    /// The store of the catalog `db`: `catalog.db` → `catalog.store`.
    pub fn beside(db: &Path) -> PathBuf {
        let stem = db
            .file_stem()
            .map_or_else(|| "catalog".into(), |s| s.to_string_lossy().into_owned());
        db.with_file_name(format!("{stem}.store"))
    }

    /// Opens the store at `root`, creating its folders.
    pub fn open(root: &Path) -> Result<Store, Error> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.objects_dir(), store.tmp_dir()] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create the store folder"))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The path kept in the database for data with this SHA-512.
    pub fn object_name(sha512: &str) -> String {
        let prefix = sha512.get(..2).unwrap_or("00");
        format!("objects/{prefix}/{sha512}")
    }

    /// The file a record's `stored_path` names.
    pub fn resolve(&self, stored_path: &str, reference: bool) -> PathBuf {
        if reference {
            PathBuf::from(stored_path)
        } else {
            self.root.join(stored_path)
        }
    }

    /// Takes `gc.lock`: shared while an add publishes, exclusive to remove.
    pub fn gc_lock(&self, exclusive: bool) -> Result<File, Error> {
        let path = self.root.join("gc.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path, "open"))?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        flock(&f, op).map_err(|e| Error::io(&path, "lock", e.into()))?;
        Ok(f)
    }

    /// Starts storing the data of image `id`: its lock taken, its part file
    /// created.
    pub fn begin(&self, id: &str) -> Result<Pending, Error> {
        let tmp = self.tmp_dir();
        let new_lock = tmp.join(format!(".{id}.lock.new"));
        let lock_path = tmp.join(format!("{id}.lock"));
        let lock = File::create(&new_lock).map_err(io_err(&new_lock, "create"))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| Error::io(&new_lock, "lock", e.into()))?;
        // Renamed once locked, so a sweeper never sees an unlocked live lock.
        std::fs::rename(&new_lock, &lock_path).map_err(io_err(&lock_path, "rename"))?;
        let part_path = tmp.join(format!("{id}.part"));
        let part = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&part_path)
            .map_err(io_err(&part_path, "create"))?;
        Ok(Pending {
            lock_path,
            part_path,
            part,
            _lock: lock,
            done: false,
        })
    }

    /// Whether the add of `id` is still running (its lock is held).
    pub fn add_is_live(&self, id: &str) -> bool {
        let path = self.tmp_dir().join(format!("{id}.lock"));
        let Ok(f) = File::open(&path) else {
            return false;
        };
        // flock locks belong to the open file, so this sees a lock held by
        // another thread of this process too.
        flock(&f, FlockOperation::NonBlockingLockExclusive) == Err(rustix::io::Errno::WOULDBLOCK)
    }

    /// Files in `tmp/` left by adds that are no longer running.
    pub fn stale_tmp_files(&self) -> Result<Vec<PathBuf>, Error> {
        let tmp = self.tmp_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&tmp).map_err(io_err(&tmp, "list"))? {
            let entry = entry.map_err(io_err(&tmp, "list"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.trim_start_matches('.').split('.').next().unwrap_or("");
            if name.starts_with('.') {
                let young = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age < NEW_LOCK_GRACE);
                if young {
                    continue;
                }
            } else if self.add_is_live(id) {
                continue;
            }
            out.push(entry.path());
        }
        out.sort();
        Ok(out)
    }

    /// Every object file, as `objects/xx/<sha512>`.
    pub fn objects(&self) -> Result<Vec<String>, Error> {
        let dir = self.objects_dir();
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(&dir).map_err(io_err(&dir, "list"))? {
            let prefix = prefix.map_err(io_err(&dir, "list"))?;
            let p = prefix.path();
            if !p.is_dir() {
                out.push(format!("objects/{}", prefix.file_name().to_string_lossy()));
                continue;
            }
            for obj in std::fs::read_dir(&p).map_err(io_err(&p, "list"))? {
                let obj = obj.map_err(io_err(&p, "list"))?;
                out.push(format!(
                    "objects/{}/{}",
                    prefix.file_name().to_string_lossy(),
                    obj.file_name().to_string_lossy()
                ));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a file of the store (an object or a tmp file).
    pub fn remove(&self, path: &Path) -> Result<(), Error> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, "remove", e)),
            _ => Ok(()),
        }
    }
}

/// The data of one add on its way into the store. Dropped without
/// [`Pending::finish`], it removes its files.
pub struct Pending {
    lock_path: PathBuf,
    part_path: PathBuf,
    part: File,
    _lock: File,
    done: bool,
}

impl Pending {
    pub fn part_path(&self) -> &Path {
        &self.part_path
    }

    /// Fills the part file with `source`'s `len` bytes.
    pub fn fill(&self, source: &File, source_path: &Path, len: u64) -> Result<Method, Error> {
        if rustix::fs::ioctl_ficlone(&self.part, source).is_ok() {
            return Ok(Method::Reflink);
        }
        copy_data(source, &self.part, len).map_err(|e| {
            Error::io(
                &self.part_path,
                format!("copy from {}", source_path.display()),
                e,
            )
        })?;
        Ok(Method::Copy)
    }

    /// Syncs the part file and moves it to `objects/` under `sha512`, unless
    /// that object exists already; returns whether it did.
    pub fn publish(&mut self, store: &Store, sha512: &str) -> Result<bool, Error> {
        let target = store.root.join(Store::object_name(sha512));
        if target.exists() {
            return Ok(false);
        }
        let dir = target.parent().unwrap_or(&store.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir, "create"))?;
        self.part
            .sync_all()
            .map_err(io_err(&self.part_path, "sync"))?;
        self.part
            .set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(io_err(&self.part_path, "make read-only"))?;
        std::fs::rename(&self.part_path, &target).map_err(io_err(&target, "rename into place"))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    }

    /// The add is complete: its tmp files go, its lock is released.
    pub fn finish(mut self) {
        self.done = true;
        let _ = std::fs::remove_file(&self.part_path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.part_path);
            let _ = std::fs::remove_file(&self.lock_path);
        }
    }
}

fn interrupted() -> io::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    Ok(())
}

/// Copies the data regions of `src` (SEEK_DATA/SEEK_HOLE) to the same
/// offsets of `dst`, then sets its length: holes stay holes.
fn copy_data(src: &File, dst: &File, len: u64) -> io::Result<()> {
    use rustix::fs::{seek, SeekFrom};
    let mut pos = 0u64;
    while pos < len {
        let data = match seek(src, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(e) if e == rustix::io::Errno::NXIO => break,
            Err(_) => pos,
        };
        if data >= len {
            break;
        }
        let hole = seek(src, SeekFrom::Hole(data)).map_or(len, |h| h.min(len));
        copy_range(src, dst, data, hole)?;
        pos = hole;
    }
    dst.set_len(len)
}

/// Copies `start..end` by `copy_file_range`, falling back to reads and
/// writes where the kernel cannot; starts writeback as it goes so that the
/// final sync finds little left to do.
fn copy_range(src: &File, dst: &File, start: u64, end: u64) -> io::Result<()> {
    let mut pos = start;
    while pos < end {
        interrupted()?;
        let want = usize::try_from(end - pos)
            .unwrap_or(COPY_STEP)
            .min(COPY_STEP);
        let (mut off_in, mut off_out) = (pos, pos);
        let n = match rustix::fs::copy_file_range(
            src,
            Some(&mut off_in),
            dst,
            Some(&mut off_out),
            want,
        ) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(_) => read_write(src, dst, pos, want)?,
        };
        let _ = rustix::fs::fadvise(
            dst,
            pos,
            std::num::NonZeroU64::new(n as u64),
            rustix::fs::Advice::DontNeed,
        );
        pos += n as u64;
    }
    Ok(())
}

/// The plain copy of up to `want` bytes at `pos`.
fn read_write(src: &File, dst: &File, pos: u64, want: usize) -> io::Result<usize> {
    let mut buf = vec![0u8; want.min(1 << 20)];
    let n = src.read_at(&mut buf, pos)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    dst.write_all_at(&buf[..n], pos)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_holes_are_copied_as_they_are() {
        let t = tempfile::tempdir().unwrap();
        let src_path = t.path().join("src");
        let f = File::create(&src_path).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(&[7u8; 5000], 3 << 20).unwrap();
        f.write_all_at(b"end", (8 << 20) - 3).unwrap();
        drop(f);
        let store = Store::open(&t.path().join("s")).unwrap();
        let p = store.begin("img").unwrap();
        let src = File::open(&src_path).unwrap();
        p.fill(&src, &src_path, 8 << 20).unwrap();
        assert_eq!(
            std::fs::read(p.part_path()).unwrap(),
            std::fs::read(&src_path).unwrap()
        );
        assert!(store.add_is_live("img"));
        assert!(store.stale_tmp_files().unwrap().is_empty());
        drop(p);
        assert!(!store.add_is_live("img"));
        assert!(std::fs::read_dir(t.path().join("s/tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn a_dead_adds_files_are_stale() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        std::fs::write(t.path().join("tmp/abc.part"), b"x").unwrap();
        std::fs::write(t.path().join("tmp/abc.lock"), b"").unwrap();
        assert_eq!(store.stale_tmp_files().unwrap().len(), 2);
        assert_eq!(Store::object_name("abcdef"), "objects/ab/abcdef");
        assert_eq!(
            Store::beside(Path::new("/x/catalog.db")),
            Path::new("/x/catalog.store")
        );
    }
}
