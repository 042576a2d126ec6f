//! File names in JSON reports. A Unix file name is bytes, not always UTF-8:
//! a name that is not UTF-8 is written with each byte outside UTF-8 escaped
//! as `\xHH` (so `n\xffame.vhd`), instead of failing the report.

use std::path::Path;

use serde::Serializer;

/// `path` as a string: itself when UTF-8, else valid parts kept and every
/// other byte written as `\xHH`.
pub fn escaped(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for piece in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(piece.valid());
        for b in piece.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `#[serde(serialize_with = "...::path")]` for a `PathBuf` field.
pub fn path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escaped(path))
}

/// `#[serde(serialize_with = "...::option")]` for an `Option<PathBuf>` field.
pub fn option<S: Serializer, P: AsRef<Path>>(path: &Option<P>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_str(&escaped(p.as_ref())),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn escapes_only_what_is_not_utf8() {
        let p = Path::new(std::ffi::OsStr::from_bytes(b"n\xffame-\xc3\xa9.vhd"));
        assert_eq!(escaped(p), "n\\xffame-é.vhd");
    }
}
