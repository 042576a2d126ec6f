//! Finding a differencing disk's parent through its locators, contained.
//!
//! A locator is written by whoever made the image, so it is never followed
//! blindly: by default a parent is looked up only inside the child's own
//! folder, by the locator's file name and by relative locators that stay
//! inside that folder. More folders, or an explicit parent for the top link,
//! need the caller's word ([`ParentOptions`]). Only regular files are opened
//! (never FIFOs, devices or /proc files), and a candidate counts only when its
//! unique id is the one the child expects.
//!
//! Order: W2ru (relative), W2ku (absolute), MacX (file URL), then the
//! deprecated Wi2r/Wi2k, then the header's parent name.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::format::{DynamicHeader, Footer, ParentLocator, PlatformCode, FOOTER_SIZE};
use crate::{Error, Result};

/// Bytes of locator data read at most (a path; real ones are a few hundred).
pub const MAX_LOCATOR_BYTES: u64 = 64 * 1024;

/// Where a parent may be looked for beyond the child's own folder.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ParentOptions {
    /// The parent of the top link (the file opened), used instead of its
    /// locators. Its unique id must still match.
    pub parent: Option<PathBuf>,
    /// More folders to search, by the locators' file names and by relative
    /// locators that stay inside them.
    pub search_dirs: Vec<PathBuf>,
}

/// One path tried (only paths the options allow are ever tried).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The locator's platform code, `name` for the header's parent name, or
    /// `option` for an explicit parent.
    pub source: String,
    /// The path as stored.
    pub stored: String,
    /// The path tried on this machine.
    pub path: PathBuf,
    /// A regular file is there.
    pub exists: bool,
}

/// A stored locator that names a place outside the allowed folders: not
/// followed (only its file name was looked up).
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub source: String,
    pub stored: String,
}

/// Why a file that exists is not the parent.
#[derive(Debug, Clone, Serialize)]
pub enum Rejected {
    /// A VHD with another unique id.
    IdMismatch { path: PathBuf, found: [u8; 16] },
    /// Not a VHD, or not readable as one.
    NotVhd { path: PathBuf, detail: String },
}

/// The outcome of looking for a parent.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub tried: Vec<Attempt>,
    pub skipped: Vec<Skipped>,
    /// Files found that are not the parent (first one first).
    pub rejected: Vec<Rejected>,
    pub found: Option<PathBuf>,
}

impl Resolution {
    /// "parent X not found; tried: ..." naming every path tried and every
    /// locator not followed.
    pub fn not_found_message(&self, header: &DynamicHeader) -> String {
        let tried: Vec<String> = self
            .tried
            .iter()
            .map(|a| format!("{} {:?} -> {}", a.source, a.stored, a.path.display()))
            .collect();
        let mut msg = format!(
            "parent {:?} not found; tried: {}",
            header.parent_name(),
            if tried.is_empty() {
                "nothing (no usable parent locator)".to_string()
            } else {
                tried.join("; ")
            }
        );
        if !self.skipped.is_empty() {
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .map(|s| format!("{} {:?}", s.source, s.stored))
                .collect();
            msg.push_str(&format!(
                "; not followed outside the child's folder (only their file names were looked up there; give --parent or --parent-dir to allow more): {}",
                skipped.join("; ")
            ));
        }
        msg
    }
}

/// A stored path split into what can be looked up: its parts after Windows
/// separators and drive letters are dropped, and whether it is absolute.
struct StoredPath {
    absolute: bool,
    parts: Vec<String>,
}

impl StoredPath {
    fn parse(stored: &str) -> StoredPath {
        let s = stored.replace('\\', "/");
        let b = s.as_bytes();
        let drive = b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic();
        let rest = if drive { &s[2..] } else { &s[..] };
        StoredPath {
            absolute: drive || rest.starts_with('/'),
            parts: rest
                .split('/')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// The last part, when it is a plain file name.
    fn file_name(&self) -> Option<&str> {
        self.parts
            .last()
            .map(String::as_str)
            .filter(|n| *n != "." && *n != "..")
    }

    /// For a relative path that never climbs above its base, the path below
    /// the base; `None` for an absolute path or one that climbs out.
    fn inside(&self) -> Option<PathBuf> {
        if self.absolute {
            return None;
        }
        let mut kept: Vec<&str> = Vec::new();
        for p in &self.parts {
            match p.as_str() {
                "." => {}
                ".." => {
                    kept.pop()?;
                }
                other => kept.push(other),
            }
        }
        (!kept.is_empty()).then(|| kept.iter().collect())
    }
}

/// Whether a stored locator path names a place outside the child's folder
/// (absolute, or relative and climbing out): `check`'s `PARENT_OUTSIDE`.
pub fn is_outside(stored: &str) -> bool {
    StoredPath::parse(stored).inside().is_none()
}

/// Turns a stored Windows or URL path into a path on this machine, relative
/// paths taken from `base`. For display only: lookups use [`resolve`].
pub fn local_path(stored: &str, base: &Path) -> PathBuf {
    let sp = StoredPath::parse(stored);
    let joined: PathBuf = sp.parts.iter().collect();
    if sp.absolute {
        Path::new("/").join(joined)
    } else {
        base.join(joined)
    }
}

/// The stored paths of `header`'s locators, in lookup order, then its name.
pub fn stored_paths(bytes: &[u8], header: &DynamicHeader) -> Vec<(String, String)> {
    let order = [
        PlatformCode::W2ru,
        PlatformCode::W2ku,
        PlatformCode::MacX,
        PlatformCode::Wi2r,
        PlatformCode::Wi2k,
    ];
    let mut out = Vec::new();
    for code in order {
        for loc in header.parent_locators.iter().filter(|l| l.code() == code) {
            if let Some(stored) = locator_text(bytes, loc).filter(|s| !s.is_empty()) {
                out.push((code.name(), stored));
            }
        }
    }
    let name = header.parent_name();
    if !name.is_empty() {
        out.push(("name".into(), name));
    }
    out
}

/// A locator's data decoded as a path, when it lies inside `bytes`.
pub fn locator_text(bytes: &[u8], loc: &ParentLocator) -> Option<String> {
    let len = u64::from(loc.platform_data_length).min(MAX_LOCATOR_BYTES);
    let data = usize::try_from(loc.platform_data_offset)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(s, n)| bytes.get(s..s.checked_add(n)?))?;
    loc.decode_path(data)
}

/// The folder of `path` ("." for a bare file name).
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Whether `candidate`'s folder, symlinks resolved, lies inside `base`'s.
fn folder_inside(candidate: &Path, base: &Path) -> bool {
    let (Ok(base), Ok(dir)) = (
        std::fs::canonicalize(base),
        std::fs::canonicalize(folder_of(candidate)),
    ) else {
        return false;
    };
    dir.starts_with(base)
}

/// Every path the options allow for the stored paths, in order.
fn candidates(
    stored: &[(String, String)],
    dirs: &[PathBuf],
    skipped: &mut Vec<Skipped>,
) -> Vec<(String, String, PathBuf)> {
    let mut out: Vec<(String, String, PathBuf)> = Vec::new();
    let mut push = |source: &str, text: &str, path: PathBuf| {
        if !out.iter().any(|(_, _, p)| *p == path) {
            out.push((source.to_string(), text.to_string(), path));
        }
    };
    for (source, text) in stored {
        let sp = StoredPath::parse(text);
        let inside = sp.inside();
        if inside.is_none() {
            skipped.push(Skipped {
                source: source.clone(),
                stored: text.clone(),
            });
        }
        for dir in dirs {
            if let Some(rel) = &inside {
                let path = dir.join(rel);
                if rel.components().count() == 1 || folder_inside(&path, dir) {
                    push(source, text, path);
                }
            }
            if let Some(name) = sp.file_name() {
                push(source, text, dir.join(name));
            }
        }
    }
    out
}

/// Looks for the parent of `child` (whose bytes and header are given): the
/// explicit parent when `top` and the options name one, else the allowed
/// candidates; the first regular file with the expected unique id wins.
pub fn resolve(
    child: &Path,
    bytes: &[u8],
    header: &DynamicHeader,
    options: &ParentOptions,
    top: bool,
) -> Resolution {
    let mut res = Resolution {
        tried: Vec::new(),
        skipped: Vec::new(),
        rejected: Vec::new(),
        found: None,
    };
    let list = match (&options.parent, top) {
        (Some(p), true) => vec![("option".to_string(), String::new(), p.clone())],
        _ => {
            let mut dirs = vec![folder_of(child)];
            dirs.extend(options.search_dirs.iter().cloned());
            candidates(&stored_paths(bytes, header), &dirs, &mut res.skipped)
        }
    };
    for (source, stored, path) in list {
        let exists = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        res.tried.push(Attempt {
            source,
            stored,
            path: path.clone(),
            exists,
        });
        if !exists {
            continue;
        }
        match parent_unique_id(&path) {
            Ok(id) if id == header.parent_unique_id => {
                res.found = Some(path);
                return res;
            }
            Ok(found) => res.rejected.push(Rejected::IdMismatch { path, found }),
            Err(e) => res.rejected.push(Rejected::NotVhd {
                path,
                detail: e.to_string(),
            }),
        }
    }
    res
}

/// Opens `path` read-only without blocking (a FIFO with no writer, a tty)
/// and refuses anything but a regular file on a real file system.
pub fn open_regular(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::io(path, "open", e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
    let pseudo = rustix::fs::fstatfs(&file).is_ok_and(|s| {
        // procfs and sysfs files claim to be regular but are generated.
        s.f_type == libc::PROC_SUPER_MAGIC || s.f_type == libc::SYSFS_MAGIC
    });
    if !meta.is_file() || pseudo {
        return Err(Error::Parent {
            path: path.to_path_buf(),
            what: "not a regular file: not opened as a parent".into(),
        });
    }
    Ok(file)
}

/// The unique id of a VHD (from its tail footer, else its head copy).
pub fn parent_unique_id(parent: &Path) -> Result<[u8; 16]> {
    use std::os::unix::fs::FileExt;
    let f = open_regular(parent)?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(parent, "stat", e))?
        .len();
    let mut sector = [0u8; FOOTER_SIZE];
    if len >= 512 {
        f.read_exact_at(&mut sector, len - 512)
            .map_err(|e| Error::io(parent, "read footer", e))?;
        if let Ok(footer) = Footer::parse(&sector, len - 512) {
            return Ok(footer.unique_id);
        }
        f.read_exact_at(&mut sector, 0)
            .map_err(|e| Error::io(parent, "read footer copy", e))?;
        if let Ok(footer) = Footer::parse(&sector, 0) {
            return Ok(footer.unique_id);
        }
    }
    Err(Error::Parent {
        path: parent.to_path_buf(),
        what: "the parent is not a VHD (no footer)".into(),
    })
}

/// The relative Windows path (`.\x.vhd`, `..\a\x.vhd`) from folder `from` to
/// `target`, both made absolute first; `None` when either cannot be resolved
/// or the path is not valid Unicode.
pub fn relative_windows_path(from: &Path, target: &Path) -> Option<String> {
    let from = std::fs::canonicalize(from).ok()?;
    let target = std::fs::canonicalize(target).ok()?;
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = target.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = Vec::new();
    if common == a.len() {
        parts.push(".".into());
    }
    parts.extend(std::iter::repeat_n("..".to_string(), a.len() - common));
    for c in &b[common..] {
        parts.push(c.as_os_str().to_str()?.to_string());
    }
    Some(parts.join("\\"))
}

/// A child's locators (with their data) for a copy of the child written into
/// `out_dir`: relative ones (W2ru, Wi2r) re-aimed from `out_dir` at `parent`,
/// the parent the child resolved to; the others unchanged. Lengths and data
/// spaces are left for the writer to set.
pub fn rebase_locators(
    locators: &[(ParentLocator, Vec<u8>)],
    parent: &Path,
    out_dir: &Path,
) -> Result<Vec<(ParentLocator, Vec<u8>)>> {
    let rel = || {
        relative_windows_path(out_dir, parent).ok_or_else(|| Error::Parent {
            path: parent.to_path_buf(),
            what: format!(
                "cannot express the parent's path relative to {}",
                out_dir.display()
            ),
        })
    };
    locators
        .iter()
        .map(|(loc, data)| match loc.code() {
            PlatformCode::W2ru => Ok((*loc, crate::format::header::encode_utf16le(&rel()?))),
            PlatformCode::Wi2r => Ok((*loc, rel()?.into_bytes())),
            _ => Ok((*loc, data.clone())),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_become_local() {
        let base = Path::new("/images");
        assert_eq!(local_path(".\\p.vhd", base), PathBuf::from("/images/p.vhd"));
        assert_eq!(
            local_path("C:\\vm\\p.vhd", base),
            PathBuf::from("/vm/p.vhd")
        );
        assert_eq!(local_path("/abs/p.vhd", base), PathBuf::from("/abs/p.vhd"));
        assert_eq!(
            local_path("sub\\p.vhd", base),
            PathBuf::from("/images/sub/p.vhd")
        );
    }

    #[test]
    fn outside_means_absolute_or_climbing_out() {
        for s in [
            "/etc/passwd",
            "C:\\vm\\p.vhd",
            "..\\..\\..\\..\\etc\\shadow",
            "sub\\..\\..\\p.vhd",
            "/proc/self/environ",
            "..",
        ] {
            assert!(is_outside(s), "{s}");
        }
        for s in [".\\p.vhd", "p.vhd", "sub\\p.vhd", "sub\\..\\p.vhd"] {
            assert!(!is_outside(s), "{s}");
        }
    }

    #[test]
    fn candidates_stay_in_the_folders() {
        let dirs = [PathBuf::from("/child")];
        let stored = [
            ("W2ku".to_string(), "/etc/passwd".to_string()),
            ("W2ru".to_string(), "..\\..\\etc\\shadow".to_string()),
            ("W2ru".to_string(), ".\\p.vhd".to_string()),
        ];
        let mut skipped = Vec::new();
        let got: Vec<PathBuf> = candidates(&stored, &dirs, &mut skipped)
            .into_iter()
            .map(|c| c.2)
            .collect();
        assert_eq!(
            got,
            [
                PathBuf::from("/child/passwd"),
                PathBuf::from("/child/shadow"),
                PathBuf::from("/child/p.vhd")
            ]
        );
        assert_eq!(skipped.len(), 2);
    }
}
