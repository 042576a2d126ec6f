//! Finding a differencing disk's parent through its locators.
//!
//! Order: W2ru (relative), W2ku (absolute), MacX (file URL), then the
//! deprecated Wi2r/Wi2k, then the header's parent name beside the child.
//! Windows paths have their backslashes turned and drive letters dropped;
//! relative paths are taken from the child's folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::format::{DynamicHeader, Footer, PlatformCode, FOOTER_SIZE};
use crate::{Error, Result};

/// Bytes of locator data read at most (a path; real ones are a few hundred).
pub const MAX_LOCATOR_BYTES: u64 = 64 * 1024;

/// One path tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The locator's platform code, or `name` for the header's parent name.
    pub source: String,
    /// The path as stored.
    pub stored: String,
    /// The path tried on this machine.
    pub path: PathBuf,
    pub exists: bool,
}

/// The outcome of looking for a parent.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub tried: Vec<Attempt>,
    pub found: Option<PathBuf>,
}

impl Resolution {
    /// "parent X not found; tried: ..." naming every path tried.
    pub fn not_found_message(&self, header: &DynamicHeader) -> String {
        let tried: Vec<String> = self
            .tried
            .iter()
            .map(|a| format!("{} {:?} -> {}", a.source, a.stored, a.path.display()))
            .collect();
        format!(
            "parent {:?} not found; tried: {}",
            header.parent_name(),
            if tried.is_empty() {
                "nothing (no usable parent locator)".to_string()
            } else {
                tried.join("; ")
            }
        )
    }
}

/// Turns a stored Windows or URL path into a path on this machine, relative
/// paths taken from `base` (the child's folder).
pub fn local_path(stored: &str, base: &Path) -> PathBuf {
    let mut s = stored.replace('\\', "/");
    // Drop a drive letter ("C:/..."): the folder layout is what can match here.
    if s.len() >= 2 && s.as_bytes()[1] == b':' && s.as_bytes()[0].is_ascii_alphabetic() {
        s = s[2..].to_string();
    }
    let p = PathBuf::from(&s);
    if p.is_absolute() {
        p
    } else {
        base.join(s.trim_start_matches("./"))
    }
}

/// Reads the locators of `header` from the child file's bytes and looks for
/// the parent.
pub fn resolve(child: &Path, bytes: &[u8], header: &DynamicHeader) -> Resolution {
    let base = child.parent().map(Path::to_path_buf).unwrap_or_default();
    let order = [
        PlatformCode::W2ru,
        PlatformCode::W2ku,
        PlatformCode::MacX,
        PlatformCode::Wi2r,
        PlatformCode::Wi2k,
    ];
    let mut tried = Vec::new();
    for code in order {
        for loc in header.parent_locators.iter().filter(|l| l.code() == code) {
            let len = u64::from(loc.platform_data_length).min(MAX_LOCATOR_BYTES);
            let Some(data) = usize::try_from(loc.platform_data_offset)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(s, n)| bytes.get(s..s.checked_add(n)?))
            else {
                continue;
            };
            let Some(stored) = loc.decode_path(data) else {
                continue;
            };
            if stored.is_empty() {
                continue;
            }
            let mut candidates = vec![local_path(&stored, &base)];
            // An absolute Windows path rarely exists here; its file name beside
            // the child often does.
            if matches!(
                code,
                PlatformCode::W2ku | PlatformCode::Wi2k | PlatformCode::MacX
            ) {
                if let Some(name) = stored.replace('\\', "/").rsplit('/').next() {
                    candidates.push(base.join(name));
                }
            }
            for path in candidates {
                let exists = path.is_file();
                tried.push(Attempt {
                    source: code.name(),
                    stored: stored.clone(),
                    path: path.clone(),
                    exists,
                });
                if exists {
                    return Resolution {
                        tried,
                        found: Some(path),
                    };
                }
            }
        }
    }
    let name = header.parent_name();
    if !name.is_empty() {
        let path = local_path(&name, &base);
        let exists = path.is_file();
        tried.push(Attempt {
            source: "name".into(),
            stored: name,
            path: path.clone(),
            exists,
        });
        if exists {
            return Resolution {
                tried,
                found: Some(path),
            };
        }
    }
    Resolution { tried, found: None }
}

/// The parent's unique id (from its tail footer, else its head copy).
pub fn parent_unique_id(parent: &Path) -> Result<[u8; 16]> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(parent).map_err(|e| Error::io(parent, "open", e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io(parent, "stat", e))?
        .len();
    let mut tail = [0u8; FOOTER_SIZE];
    if len >= 512 {
        f.seek(SeekFrom::Start(len - 512))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(|e| Error::io(parent, "read footer", e))?;
        if let Ok(footer) = Footer::parse(&tail, len - 512) {
            return Ok(footer.unique_id);
        }
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(|e| Error::io(parent, "read footer copy", e))?;
        if let Ok(footer) = Footer::parse(&tail, 0) {
            return Ok(footer.unique_id);
        }
    }
    Err(Error::Parent {
        path: parent.to_path_buf(),
        what: "the parent is not a VHD (no footer)".into(),
    })
}

/// Checks that the parent found is the one the child was made from.
pub fn check_identity(child: &Path, header: &DynamicHeader, parent: &Path) -> Result<()> {
    let id = parent_unique_id(parent)?;
    if id != header.parent_unique_id {
        return Err(Error::Parent {
            path: child.to_path_buf(),
            what: format!(
                "parent {} has unique id {}, the child's header expects {}",
                parent.display(),
                uuid::Uuid::from_bytes(id),
                uuid::Uuid::from_bytes(header.parent_unique_id)
            ),
        });
    }
    Ok(())
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
}
