//! The library's one error type: a stable family (Io, Corrupt, Unsupported,
//! Parent, Usage) plus the context the layer that knows it adds: the file,
//! the structure, the field, the offset and the values.

use std::path::{Path, PathBuf};

use crate::format::FormatError;

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in vhdkit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed.
    #[error("{}: {op}: {source}", path.display())]
    Io {
        path: PathBuf,
        op: String,
        #[source]
        source: std::io::Error,
    },
    /// A structure is damaged.
    #[error("{}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    /// The file is valid but uses something vhdkit does not handle.
    #[error("{}: not supported: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    /// The file is not a VHD at all.
    #[error("{}: {detail}", path.display())]
    NotVhd { path: PathBuf, detail: String },
    /// A differencing disk's parent could not be found or does not match.
    #[error("{}: {what}", path.display())]
    Parent { path: PathBuf, what: String },
    /// The image has errors `check` reports; the operation refuses it.
    #[error("{}: {} error(s) found; first: {first}", path.display(), count)]
    Check {
        path: PathBuf,
        count: usize,
        first: String,
    },
    /// The operation is refused for a reason the user must act on (Nova's
    /// preconditions, a filesystem that cannot be grown, shrinking).
    #[error("{}: refused: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
    /// The arguments do not make sense.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An I/O error with the file and the operation.
    pub fn io(path: &Path, op: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            op: op.into(),
            source,
        }
    }

    /// A corrupt structure in `path`.
    pub fn corrupt(path: &Path, source: FormatError) -> Error {
        Error::Corrupt {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The stable family name, for JSON and exit codes.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Corrupt { .. } => "corrupt",
            Error::Unsupported { .. } => "unsupported",
            Error::NotVhd { .. } => "not_vhd",
            Error::Parent { .. } => "parent",
            Error::Check { .. } => "check",
            Error::Refused { .. } => "refused",
            Error::Usage(_) => "usage",
        }
    }
}
