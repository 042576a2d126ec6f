//! The one error type of the ext code: corrupt structures say where and what,
//! unsupported layouts say which feature, and a filesystem that needs a check
//! says why, all before anything is written.

use std::io;

/// Why probing, planning or applying a change to an ext filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An on-disk structure holds a value that cannot be right.
    #[error("{structure} at byte {offset:#x}: {field} is {found}, expected {expected}")]
    Corrupt {
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: String,
        expected: String,
    },
    /// A valid filesystem this code does not (yet) change.
    #[error("unsupported: {what}")]
    Unsupported { what: String },
    /// The filesystem must go through `e2fsck -f` before it is resized.
    #[error("the filesystem needs 'e2fsck -f' first: {reason}")]
    NeedsFsck { reason: String },
    /// A plan no longer describes the device it is applied to.
    #[error("the grow plan does not match the device any more: {what}")]
    StalePlan { what: String },
    /// Reading or writing the device failed.
    #[error("{operation} at byte {offset:#x}: {source}")]
    Io {
        operation: &'static str,
        offset: u64,
        #[source]
        source: io::Error,
    },
}

impl FsError {
    pub(crate) fn corrupt(
        structure: &'static str,
        field: &'static str,
        offset: u64,
        found: impl ToString,
        expected: impl ToString,
    ) -> FsError {
        FsError::Corrupt {
            structure,
            field,
            offset,
            found: found.to_string(),
            expected: expected.to_string(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> FsError {
        FsError::Unsupported { what: what.into() }
    }
}

/// A structure holding a value that cannot be right, named (structure,
/// field, byte offset, value found and expected) the same way for every
/// caller: the grower maps it to [`FsError::Corrupt`], the free-space reader
/// to its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub structure: &'static str,
    pub field: &'static str,
    pub offset: u64,
    pub found: String,
    pub expected: String,
}

impl From<Problem> for FsError {
    fn from(p: Problem) -> FsError {
        FsError::Corrupt {
            structure: p.structure,
            field: p.field,
            offset: p.offset,
            found: p.found,
            expected: p.expected,
        }
    }
}
