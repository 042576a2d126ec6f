//! Writing outputs safely: a temporary file beside the target, synced, then
//! renamed over it. On any error (or drop before `commit`) the temporary file
//! is removed and nothing appears at the target path.
//!
//! Durability is the writer's choice: by default the data and then the
//! folder are synced around the rename, so after a crash OUT is either the
//! old file or the whole new one. With [`Output::no_sync`] (`--no-sync`) the
//! rename happens without fsync, as `qemu-img convert`, `cp` and `rsync` do:
//! a crash shortly after can leave OUT empty, short or with zero-filled
//! ranges on filesystems that do not order data before the rename.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// An output being written.
pub struct Output {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    sync: bool,
}

impl Output {
    /// Creates the temporary file in `target`'s folder. Refuses a target that
    /// is one of `inputs` (same file, by device and inode, or by path), an
    /// existing target that is not a regular file (a device, a FIFO, a
    /// folder) and a missing folder, all before any data is written. A
    /// symbolic link is followed: its target is replaced, written beside it.
    /// Temporary files of dead vhdkit runs left in that folder are removed.
    pub fn create(target: &Path, inputs: &[&Path]) -> Result<Output> {
        let target = resolve_links(target)?;
        for input in inputs {
            if same_file(input, &target) {
                return Err(Error::Usage(format!(
                    "{}: output is the input file; vhdkit never modifies its input",
                    target.display()
                )));
            }
        }
        refuse_special(&target)?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::Usage(format!(
                "{}: the folder {} does not exist; create it first",
                target.display(),
                dir.display()
            )));
        }
        remove_stale(&dir);
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{}.{}.", short_name(&target), std::process::id()))
            .suffix(TEMP_SUFFIX)
            // Ordinary file permissions (the umask applies), not tempfile's 0600.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, "create temporary file", e))?;
        Ok(Output {
            target,
            temp,
            sync: true,
        })
    }

    /// Skips the fsyncs of [`Output::commit`] when `no_sync` is set.
    pub fn no_sync(mut self, no_sync: bool) -> Output {
        self.sync = !no_sync;
        self
    }

    /// Whether `commit` syncs before the rename.
    pub fn syncs(&self) -> bool {
        self.sync
    }

    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    pub fn file_mut(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// The temporary path (for messages).
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Syncs the data (unless `no_sync`) and renames the file over the
    /// target.
    pub fn commit(self) -> Result<()> {
        crate::disk::source::check_inputs()?;
        let target = self.target;
        if self.sync {
            self.temp
                .as_file()
                .sync_all()
                .map_err(|e| Error::io(&target, "sync", e))?;
        }
        self.temp
            .persist(&target)
            .map_err(|e| Error::io(&target, "rename into place", e.error))?;
        if !self.sync {
            return Ok(());
        }
        if let Some(dir) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// The end of every temporary output's name.
pub const TEMP_SUFFIX: &str = ".vhdkit-tmp";

/// Bytes of OUT's name kept in the temporary name: with the dot, the pid,
/// tempfile's 6 random characters and the suffix it stays under 255 bytes.
const NAME_KEEP: usize = 200;

/// OUT's file name, cut to [`NAME_KEEP`] bytes at a character boundary.
fn short_name(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let mut end = name.len().min(NAME_KEEP);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or("out").to_string()
}

/// Follows symbolic links (at most 40, as the kernel does) to the path the
/// output replaces; a dangling link's target is created.
fn resolve_links(target: &Path) -> Result<PathBuf> {
    let mut path = target.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let next = std::fs::read_link(&path)
                    .map_err(|e| Error::io(&path, "read symbolic link", e))?;
                path = match path.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(Error::Usage(format!(
        "{}: too many levels of symbolic links",
        target.display()
    )))
}

/// Refuses an existing OUT that is not a regular file: renaming over a
/// device node or a FIFO would replace it with a file.
fn refuse_special(target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_file() => Err(Error::Usage(format!(
            "{}: is {}; vhdkit writes its outputs as regular files only and leaves it untouched",
            target.display(),
            crate::disk::source::file_kind(&meta)
        ))),
        _ => Ok(()),
    }
}

/// Removes temporary outputs in `dir` whose writer is gone (killed with
/// SIGKILL, a power cut): `.NAME.PID.XXXXXX.vhdkit-tmp` where no process
/// PID runs. A live run's files, and anything else, are kept. Without
/// `/proc` nothing is removed.
fn remove_stale(dir: &Path) {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = temp_pid(&name.to_string_lossy()) else {
            continue;
        };
        if pid == std::process::id() || proc.join(pid.to_string()).exists() {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The writer's pid in a temporary output's name.
fn temp_pid(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let mut parts = stem.rsplitn(3, '.');
    let random = parts.next()?;
    let pid = parts.next()?;
    parts.next()?;
    if random.len() != 6 || !random.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    pid.parse().ok().filter(|&p| p > 0)
}

/// Whether two paths name the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names() {
        assert_eq!(temp_pid(".disk.vhd.1234.aB3xYz.vhdkit-tmp"), Some(1234));
        assert_eq!(temp_pid(".disk.vhd.aB3xYz.vhdkit-tmp"), None);
        assert_eq!(temp_pid(".disk.vhd.12x.aB3xYz.vhdkit-tmp"), None);
        assert_eq!(temp_pid("disk.vhd"), None);
        let long = "é".repeat(127);
        let short = short_name(Path::new(&long));
        assert!(short.len() <= NAME_KEEP);
        assert!(format!(".{short}.4194304.abcdef{TEMP_SUFFIX}").len() <= 255);
    }
}
