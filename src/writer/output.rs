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
    /// is one of `inputs` (same file, by device and inode, or by path).
    pub fn create(target: &Path, inputs: &[&Path]) -> Result<Output> {
        for input in inputs {
            if same_file(input, target) {
                return Err(Error::Usage(format!(
                    "{}: output is the input file; vhdkit never modifies its input",
                    target.display()
                )));
            }
        }
        if target.is_dir() {
            return Err(Error::Usage(format!(
                "{}: is a directory",
                target.display()
            )));
        }
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".vhdkit-tmp")
            // Ordinary file permissions (the umask applies), not tempfile's 0600.
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .tempfile_in(&dir)
            .map_err(|e| Error::io(&dir, "create temporary file", e))?;
        Ok(Output {
            target: target.to_path_buf(),
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

/// Whether two paths name the same file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
