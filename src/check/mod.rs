//! `check`: every rule vhd-util applies, plus what qemu skips.
//!
//! Works on a [`Layout`] and the file's bytes (no I/O but parent lookup).
//! Each finding has a stable code, a severity, the byte offset of the field,
//! and a message naming the field, the value found and the value expected.
//! Rules are small functions grouped by structure; a damaged structure stops
//! only the rules that depend on it.

mod rules;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::{Chain, LinkError, ParentOptions};
use crate::format::header::LOCATORS_OFFSET;
use crate::format::{DiskType, Layout};
use crate::{Error, Result};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Severity {
    /// The file is damaged: a consumer may refuse it or read it wrong.
    Error,
    /// Odd but readable: some tool may complain.
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// Stable identifier, e.g. `FOOTER_CHECKSUM`.
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// The file the finding is about (a link of a chain).
    #[serde(serialize_with = "crate::format::path_json::path")]
    pub file: PathBuf,
    /// Absolute byte offset of the structure or field at fault.
    pub offset: u64,
    /// The field, the value found and the value expected.
    pub message: String,
    /// Set on the one finding that stands for the findings of this code
    /// beyond the first [`FOLD_AFTER`] (of one file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folded: Option<Folded>,
}

/// Findings of one code beyond the first [`FOLD_AFTER`], folded into one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Folded {
    /// How many findings were folded.
    pub count: u64,
    /// Offset of the first finding folded.
    pub first_offset: u64,
    /// Offset of the last finding folded.
    pub last_offset: u64,
}

/// Findings of one code (per file) listed in full; the rest are folded, so
/// that check's memory and output stay bounded whatever the image says.
pub const FOLD_AFTER: usize = 20;

/// The result of checking one file and, for a differencing disk, its chain.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Report {
    /// No finding is an error (warnings allowed).
    pub ok: bool,
    /// Every finding, the leaf's first, then each parent's.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings that are errors.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// How many findings are errors.
    pub fn error_count(&self) -> usize {
        self.errors().count()
    }

    /// An [`Error::Check`] when the report has errors.
    pub fn into_result(self, path: &Path) -> Result<Report> {
        let first = self
            .errors()
            .next()
            .map(|f| format!("{} at {:#x}: {}", f.code, f.offset, f.message));
        match first {
            None => Ok(self),
            Some(first) => Err(Error::Check {
                path: path.to_path_buf(),
                count: self.error_count(),
                first,
            }),
        }
    }
}

/// Collects findings for one file.
pub(crate) struct Findings<'a> {
    file: &'a Path,
    list: Vec<Finding>,
    /// Per code: findings listed, and the fold of the ones beyond.
    counts: Vec<(&'static str, usize, Severity, Option<Folded>)>,
    /// Drops mapped pages a rule has finished reading (resident memory stays
    /// small while scanning every block's bitmap).
    pub release: &'a dyn Fn(u64, u64),
}

impl Findings<'_> {
    pub fn error(&mut self, code: &'static str, offset: u64, message: impl Into<String>) {
        self.push(code, Severity::Error, offset, message.into());
    }
    pub fn warn(&mut self, code: &'static str, offset: u64, message: impl Into<String>) {
        self.push(code, Severity::Warning, offset, message.into());
    }
    fn push(&mut self, code: &'static str, severity: Severity, offset: u64, message: String) {
        let slot = match self
            .counts
            .iter()
            .position(|c| c.0 == code && c.2 == severity)
        {
            Some(i) => &mut self.counts[i],
            None => {
                self.counts.push((code, 0, severity, None));
                let last = self.counts.len() - 1;
                &mut self.counts[last]
            }
        };
        if slot.1 < FOLD_AFTER {
            slot.1 += 1;
            self.list.push(Finding {
                code,
                severity,
                file: self.file.to_path_buf(),
                offset,
                message,
                folded: None,
            });
            return;
        }
        let fold = slot.3.get_or_insert(Folded {
            count: 0,
            first_offset: offset,
            last_offset: offset,
        });
        fold.count += 1;
        fold.last_offset = offset;
    }

    /// The findings, each code's fold last among its own.
    fn finish(mut self) -> Vec<Finding> {
        for (code, _, severity, fold) in std::mem::take(&mut self.counts) {
            let Some(fold) = fold else { continue };
            self.list.push(Finding {
                code,
                severity,
                file: self.file.to_path_buf(),
                offset: fold.first_offset,
                message: format!(
                    "{} more {code} finding(s) like the ones above, at offsets {:#x} to {:#x} (folded: only the first {FOLD_AFTER} of a code are listed)",
                    fold.count, fold.first_offset, fold.last_offset
                ),
                folded: Some(fold),
            });
        }
        self.list
    }
}

/// Options for [`check_path`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// The time "now" for the future-timestamp rule (seconds since the Unix
    /// epoch); `None` for the system clock.
    pub now_unix: Option<i64>,
    /// Where parents may be looked for beyond the child's folder.
    pub parents: ParentOptions,
}

/// Checks the VHD at `path` and, link by link, its parents. An `Err` means
/// the file cannot be read as a VHD at all (exit status 2), or holds another
/// image format (refused first, unless `--input-format raw`).
pub fn check_path(path: &Path, options: &Options) -> Result<Report> {
    crate::disk::refuse_foreign(path)?;
    let mut findings = Vec::new();
    let mut chain = Chain::new(&options.parents);
    let mut current = path.to_path_buf();
    let mut child_size: Option<u64> = None;
    loop {
        let source = chain.open_source(&current)?;
        let layout = Layout::parse(source.bytes()).ok_or_else(|| Error::NotVhd {
            path: current.clone(),
            detail: not_a_vhd_message(source.bytes()),
        })?;
        let release = |offset: u64, len: u64| source.release(offset, len);
        let mut f = Findings {
            file: &current,
            list: Vec::new(),
            counts: Vec::new(),
            release: &release,
        };
        // The layout holds its own copy of the BAT: drop the pages it read.
        source.release(0, source.len());
        rules::check_layout(&mut f, &layout, source.bytes(), options);
        if let Some(size) = child_size {
            if layout.footer.current_size != size {
                f.warn(
                    "PARENT_SIZE",
                    layout.footer_offset + 48,
                    format!(
                        "parent current size {} differs from its child's {size}",
                        layout.footer.current_size
                    ),
                );
            }
        }
        let next = next_link(&mut f, &current, &layout, source.bytes(), &mut chain);
        // Findings read from a file that shrank or changed under the map
        // are not about the image: say it changed instead (exit 2).
        source.check_unchanged()?;
        findings.extend(f.finish());
        match next {
            Some(p) => {
                child_size = Some(layout.footer.current_size);
                current = p;
            }
            None => break,
        }
    }
    let ok = !findings.iter().any(|f| f.severity == Severity::Error);
    Ok(Report { ok, findings })
}

/// Why a file is not a VHD, in the words a user needs.
pub fn not_a_vhd_message(bytes: &[u8]) -> String {
    let n = bytes.len();
    if n < 511 {
        format!("not a VHD: the file has {n} bytes, fewer than a 512-byte footer")
    } else {
        let tail = &bytes[n - 512.min(n)..];
        format!(
            "not a VHD: footer at {:#x}: cookie: found {}, expected \"conectix\" (no footer copy at offset 0 either)",
            n.saturating_sub(512),
            crate::format::escape_bytes(&tail[..8])
        )
    }
}

/// Resolves the parent of a differencing disk for the chain walk, reporting
/// what goes wrong as findings.
fn next_link(
    f: &mut Findings<'_>,
    current: &Path,
    layout: &Layout,
    bytes: &[u8],
    chain: &mut Chain,
) -> Option<PathBuf> {
    if layout.disk_type() != Some(DiskType::Differencing) {
        return None;
    }
    let parts = layout.dynamic.as_ref()?.as_ref().ok()?;
    let header = &parts.header;
    chain.enter(current);
    let (res, found) = chain.parent_of(current, bytes, header);
    match found {
        Ok(p) => Some(p),
        Err(e) => {
            let field = match e {
                LinkError::IdMismatch { .. } => 40,
                LinkError::Loop { .. } | LinkError::TooDeep { .. } => LOCATORS_OFFSET as u64,
                _ => 64,
            };
            f.error(
                e.code(),
                parts.header_offset + field,
                e.message(&res, header),
            );
            None
        }
    }
}

impl Report {
    /// The human listing.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for f in &self.findings {
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "{}: {sev} {} at {:#x}: {}",
                f.file.display(),
                f.code,
                f.offset,
                f.message
            );
        }
        let errors = self.error_count();
        let warnings = self.findings.len() - errors;
        let _ = writeln!(
            out,
            "{}: {errors} error(s), {warnings} warning(s)",
            if self.ok { "ok" } else { "FAILED" }
        );
        out
    }
}
