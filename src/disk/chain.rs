//! The one differencing-chain walker: `open`, `check` and `info` each visit
//! a chain's links through [`Chain`], which keeps the links seen (loops), the
//! depth limit, and the contained parent lookup ([`parent::resolve`]) in one
//! place. What each caller does with a link, and how it reports a broken one,
//! stays with the caller.

use std::path::{Path, PathBuf};

use super::parent::{self, ParentOptions, Rejected, Resolution};
use crate::format::DynamicHeader;

/// Longest chain of differencing disks followed (the leaf included).
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Why a link's parent cannot be used.
#[derive(Debug, Clone)]
pub enum LinkError {
    /// No allowed path holds a regular file (the resolution says what was tried).
    NotFound,
    /// Files were found, but none has the unique id the child expects.
    IdMismatch { path: PathBuf, found: [u8; 16] },
    /// A file was found, but it is not a VHD.
    NotVhd { path: PathBuf, detail: String },
    /// The parent is already a link of this chain.
    Loop { path: PathBuf },
    /// The chain has [`MAX_CHAIN_DEPTH`] links already.
    TooDeep { path: PathBuf },
}

impl LinkError {
    /// The stable code `check` reports.
    pub fn code(&self) -> &'static str {
        match self {
            LinkError::NotFound => "PARENT_NOT_FOUND",
            LinkError::IdMismatch { .. } => "PARENT_ID_MISMATCH",
            LinkError::NotVhd { .. } => "PARENT_NOT_VHD",
            LinkError::Loop { .. } => "PARENT_LOOP",
            LinkError::TooDeep { .. } => "CHAIN_TOO_DEEP",
        }
    }

    /// What went wrong, naming the paths and values.
    pub fn message(&self, res: &Resolution, header: &DynamicHeader) -> String {
        match self {
            LinkError::NotFound => res.not_found_message(header),
            LinkError::IdMismatch { path, found } => format!(
                "parent unique id: found {} in {}, expected {} (the child's header)",
                uuid::Uuid::from_bytes(*found),
                path.display(),
                uuid::Uuid::from_bytes(header.parent_unique_id)
            ),
            LinkError::NotVhd { path, detail } => {
                format!("{}: not a VHD: {detail}", path.display())
            }
            LinkError::Loop { path } => format!(
                "parent {} is already in the chain: the chain loops",
                path.display()
            ),
            LinkError::TooDeep { path } => format!(
                "the chain has more than {MAX_CHAIN_DEPTH} links (link {} would be {})",
                MAX_CHAIN_DEPTH + 1,
                path.display()
            ),
        }
    }
}

/// A walk down one chain, leaf first.
#[derive(Debug)]
pub struct Chain {
    options: ParentOptions,
    /// The links entered so far, canonical paths, leaf first.
    seen: Vec<PathBuf>,
}

impl Chain {
    pub fn new(options: &ParentOptions) -> Chain {
        Chain {
            options: options.clone(),
            seen: Vec::new(),
        }
    }

    /// Links entered so far.
    pub fn depth(&self) -> usize {
        self.seen.len()
    }

    /// The leaf's path as entered (canonical), if any.
    pub fn leaf(&self) -> Option<&Path> {
        self.seen.first().map(PathBuf::as_path)
    }

    /// Opens the file of the next link: the leaf as any input, a parent only
    /// as a regular file.
    pub fn open_source(&self, path: &Path) -> crate::Result<super::Source> {
        if self.seen.is_empty() {
            super::Source::open(path)
        } else {
            super::Source::from_file(path, parent::open_regular(path)?)
        }
    }

    /// Records `path` as the next link.
    pub fn enter(&mut self, path: &Path) {
        self.seen
            .push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    }

    /// The parent of the last link entered (`child`, whose bytes and header
    /// are given): found inside the allowed folders, with the expected unique
    /// id, not already in the chain, and within the depth limit.
    pub fn parent_of(
        &self,
        child: &Path,
        bytes: &[u8],
        header: &DynamicHeader,
    ) -> (Resolution, Result<PathBuf, LinkError>) {
        let top = self.seen.len() <= 1;
        let res = parent::resolve(child, bytes, header, &self.options, top);
        let outcome = match (&res.found, res.rejected.first()) {
            (Some(found), _) => self.admit(found),
            (None, Some(Rejected::IdMismatch { path, found })) => Err(LinkError::IdMismatch {
                path: path.clone(),
                found: *found,
            }),
            (None, Some(Rejected::NotVhd { path, detail })) => Err(LinkError::NotVhd {
                path: path.clone(),
                detail: detail.clone(),
            }),
            (None, None) => Err(LinkError::NotFound),
        };
        (res, outcome)
    }

    fn admit(&self, found: &Path) -> Result<PathBuf, LinkError> {
        let canonical = std::fs::canonicalize(found).unwrap_or_else(|_| found.to_path_buf());
        if self.seen.contains(&canonical) {
            return Err(LinkError::Loop {
                path: found.to_path_buf(),
            });
        }
        if self.seen.len() >= MAX_CHAIN_DEPTH {
            return Err(LinkError::TooDeep {
                path: found.to_path_buf(),
            });
        }
        Ok(found.to_path_buf())
    }
}
