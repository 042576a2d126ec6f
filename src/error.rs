//! The library's one error type. Each variant is a kind a caller acts on,
//! with the context the layer that knows it adds (the file, the structure,
//! the field, the offset, the values):
//!
//! | kind | variant | exit status |
//! |---|---|---|
//! | `io` | [`Error::Io`]: an operating-system call failed | 2 |
//! | `corrupt` | [`Error::Corrupt`]: a structure is damaged | 2 |
//! | `unsupported` | [`Error::Unsupported`]: valid, but not handled | 2 |
//! | `not_vhd` | [`Error::NotVhd`]: not a VHD at all | 2 |
//! | `foreign` | [`Error::Foreign`]: another image format (qcow2, VMDK, VHDX, ...) | 2 |
//! | `parent` | [`Error::Parent`]: a differencing parent is missing or wrong | 2 |
//! | `not_a_catalog` | [`Error::NotCatalog`]: a file given as the image catalog is not one | 2 |
//! | `usage` | [`Error::Usage`]: the arguments do not make sense | 2 |
//! | `interrupted` | [`Error::Interrupted`]: SIGINT or SIGTERM | 130 |
//! | `check` | [`Error::Check`]: the input has errors `check` reports; refused | 1 |
//! | `refused` | [`Error::Refused`]: a rule refuses the operation | 1 |
//!
//! The layers below keep their own small error enums where the context is
//! theirs (`format::FormatError`, `partition::PartError`, `fs::fat::FatError`,
//! `fs::ext::FsError`); each converts into this one the same way, through
//! [`Error::from_part`], [`Error::from_fat`] and [`Error::from_ext`]: I/O
//! stays I/O, corrupt stays corrupt, and only what is a rule's refusal
//! becomes [`Error::Refused`].

use std::path::{Path, PathBuf};

use crate::format::FormatError;

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `path: ` for a message, or nothing when the error is about no file.
fn at(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

/// Everything that can go wrong in vhdkit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("{}{op}: {source}", at(path))]
    Io {
        /// The file the error is about (empty when none).
        path: PathBuf,
        /// The operation that failed, with its offset when it has one.
        op: String,
        #[source]
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A structure is damaged.
    #[error("{}{source}", at(path))]
    Corrupt {
        /// The file the error is about (empty when none).
        path: PathBuf,
        #[source]
        /// The damaged structure: field, offset, value found and expected.
        source: FormatError,
    },
    /// The file is valid but uses something vhdkit does not handle, or a
    /// result would exceed a format's limit.
    #[error("{}not supported: {what}", at(path))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not handled.
        what: String,
    },
    /// The file is not a VHD at all.
    #[error("{}{detail}", at(path))]
    NotVhd {
        /// The file.
        path: PathBuf,
        /// Why it is not read as a VHD.
        detail: String,
    },
    /// The file is another image format (qcow2, VMDK, VHDX, ...): reading
    /// it as a raw disk would take the container's bytes for the disk.
    #[error("{} is {format}, not a VHD or a raw disk: {fix}", path.display())]
    Foreign {
        /// The file the error is about (empty when none).
        path: PathBuf,
        /// The format recognised, e.g. `qcow2`.
        format: String,
        /// How to convert it (a `qemu-img convert` line).
        fix: String,
    },
    /// A differencing disk's parent could not be found or does not match.
    #[error("{}{what}", at(path))]
    Parent {
        /// The child whose parent is wrong.
        path: PathBuf,
        /// What was tried and found.
        what: String,
    },
    /// The image has errors `check` reports; the operation refuses it.
    #[error("{}{} error(s) found; first: {first}", at(path), count)]
    Check {
        /// The file the error is about (empty when none).
        path: PathBuf,
        /// How many errors `check` found.
        count: usize,
        /// The first error: code, offset and message.
        first: String,
    },
    /// The operation is refused by a rule the user must act on (Nova's
    /// preconditions, a filesystem that cannot be grown, shrinking). `code`
    /// is stable, for scripts.
    #[error("{}refused: {reason}", at(path))]
    Refused {
        /// The file the error is about (empty when none).
        path: PathBuf,
        /// The rule's stable code, e.g. `NOT_ONE_PARTITION`.
        code: &'static str,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// A file given as the image catalog is not one (not SQLite, another
    /// program's database, damaged, or a newer schema); it is left as is.
    #[error("{}: not a vhdkit catalog: {detail}; the file is left untouched", path.display())]
    NotCatalog {
        /// The file given as the catalog.
        path: PathBuf,
        /// Why it is not one.
        detail: String,
    },
    /// The arguments do not make sense.
    #[error("{0}")]
    Usage(String),
    /// SIGINT or SIGTERM stopped the run; nothing was written.
    #[error("interrupted; nothing was written")]
    Interrupted,
}

/// The kind of an [`Error`], one per variant, without its context: what a
/// caller matches on (`Error::kind()`). New kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system call failed (open, read, write, rename, ...).
    Io,
    /// A structure of the image is damaged.
    Corrupt,
    /// Valid, but something vhdkit does not handle (or a result beyond a
    /// format's limit).
    Unsupported,
    /// Not a VHD at all.
    NotVhd,
    /// Another image format (qcow2, VMDK, VHDX, ...).
    Foreign,
    /// A differencing disk's parent is missing or does not match.
    Parent,
    /// A file given as the image catalog is not one.
    NotCatalog,
    /// The input has errors `check` reports, so the operation refused it.
    Check,
    /// A rule refuses the operation ([`Error::refusal_code`] names it).
    Refused,
    /// The arguments or options do not make sense.
    Usage,
    /// SIGINT or SIGTERM stopped the run.
    Interrupted,
}

impl ErrorKind {
    /// The stable name (`io`, `corrupt`, `unsupported`, `not_vhd`,
    /// `foreign`, `parent`, `not_a_catalog`, `check`, `refused`, `usage`,
    /// `interrupted`), as the JSON output carries it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::NotVhd => "not_vhd",
            ErrorKind::Foreign => "foreign",
            ErrorKind::Parent => "parent",
            ErrorKind::NotCatalog => "not_a_catalog",
            ErrorKind::Check => "check",
            ErrorKind::Refused => "refused",
            ErrorKind::Usage => "usage",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `kind == "parent"`: compares the stable name.
impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// Exit status: done, nothing wrong.
pub const EXIT_OK: u8 = 0;
/// Exit status: problems found, or refused by a rule.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit status: could not run.
pub const EXIT_FAILED: u8 = 2;
/// Exit status: interrupted by a signal (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

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

    /// Something vhdkit does not handle, in `path`.
    pub fn unsupported(path: &Path, what: impl Into<String>) -> Error {
        Error::Unsupported {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    /// A rule refuses the operation on `path`.
    pub fn refused(path: &Path, code: &'static str, reason: impl Into<String>) -> Error {
        Error::Refused {
            path: path.to_path_buf(),
            code,
            reason: reason.into(),
        }
    }

    /// A partition-table error on the disk read from `path`.
    pub fn from_part(path: &Path, e: crate::partition::PartError) -> Error {
        use crate::partition::PartError;
        match e {
            PartError::Io {
                operation,
                offset,
                source,
            } => Error::io(
                path,
                format!("partition table: {operation} at {offset:#x}"),
                source,
            ),
            PartError::Corrupt(f) => Error::corrupt(path, f),
            other => Error::refused(path, "PARTITION", other.to_string()),
        }
    }

    /// A FAT filesystem error on the disk read from `path`.
    pub fn from_fat(path: &Path, e: crate::fs::fat::FatError) -> Error {
        use crate::disk::device::DeviceError;
        use crate::fs::fat::FatError;
        match e {
            FatError::Device(DeviceError::Io {
                operation,
                offset,
                source,
            }) => Error::io(
                path,
                format!("FAT filesystem: {operation} at {offset:#x}"),
                source,
            ),
            other => Error::refused(path, "FILESYSTEM", format!("FAT filesystem: {other}")),
        }
    }

    /// An ext2/3/4 filesystem error on the disk read from `path`; `what`
    /// names the filesystem and where it is.
    pub fn from_ext(path: &Path, what: &str, e: crate::fs::ext::FsError) -> Error {
        use crate::fs::ext::FsError;
        match e {
            FsError::Io {
                operation,
                offset,
                source,
            } => Error::io(path, format!("{what}: {operation} at {offset:#x}"), source),
            other => Error::refused(path, "FILESYSTEM", format!("{what}: {other}")),
        }
    }

    /// What kind of error this is, for a caller to match on; its
    /// [`ErrorKind::name`] is the stable name the JSON output carries.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } => ErrorKind::Corrupt,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::NotVhd { .. } => ErrorKind::NotVhd,
            Error::Foreign { .. } => ErrorKind::Foreign,
            Error::Parent { .. } => ErrorKind::Parent,
            Error::NotCatalog { .. } => ErrorKind::NotCatalog,
            Error::Check { .. } => ErrorKind::Check,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Interrupted => ErrorKind::Interrupted,
        }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        let p = match self {
            Error::Io { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::NotVhd { path, .. }
            | Error::Foreign { path, .. }
            | Error::Parent { path, .. }
            | Error::NotCatalog { path, .. }
            | Error::Check { path, .. }
            | Error::Refused { path, .. } => path.as_path(),
            Error::Usage(_) | Error::Interrupted => return None,
        };
        (!p.as_os_str().is_empty()).then_some(p)
    }

    /// The stable code of a refusal: the rule's code, or `CHECK_ERRORS`
    /// for a damaged input; `None` when the command could not run.
    pub fn refusal_code(&self) -> Option<&'static str> {
        match self {
            Error::Refused { code, .. } => Some(code),
            Error::Check { .. } => Some("CHECK_ERRORS"),
            _ => None,
        }
    }

    /// The exit status this error ends the program with.
    pub fn exit_status(&self) -> u8 {
        match self {
            Error::Check { .. } | Error::Refused { .. } => EXIT_PROBLEMS,
            Error::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_FAILED,
        }
    }
}
