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

use crate::disk::{parent, Source, MAX_CHAIN_DEPTH};
use crate::format::{DiskType, Layout};
use crate::{Error, Result};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `FOOTER_CHECKSUM`.
    pub code: &'static str,
    pub severity: Severity,
    /// The file the finding is about (a link of a chain).
    #[serde(serialize_with = "crate::format::path_json::path")]
    pub file: PathBuf,
    /// Absolute byte offset of the structure or field at fault.
    pub offset: u64,
    pub message: String,
}

/// The result of checking one file and, for a differencing disk, its chain.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

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
    pub list: Vec<Finding>,
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
        self.list.push(Finding {
            code,
            severity,
            file: self.file.to_path_buf(),
            offset,
            message,
        });
    }
}

/// Options for [`check_path`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The time "now" for the future-timestamp rule (seconds since the Unix
    /// epoch); `None` for the system clock.
    pub now_unix: Option<i64>,
}

/// Checks the VHD at `path` and, link by link, its parents. An `Err` means
/// the file cannot be read as a VHD at all (exit status 2).
pub fn check_path(path: &Path, options: &Options) -> Result<Report> {
    let mut findings = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut current = path.to_path_buf();
    let mut child_size: Option<u64> = None;
    loop {
        let source = Source::open(&current)?;
        let layout = Layout::parse(source.bytes()).ok_or_else(|| Error::NotVhd {
            path: current.clone(),
            detail: not_a_vhd_message(source.bytes()),
        })?;
        let release = |offset: u64, len: u64| source.release(offset, len);
        let mut f = Findings {
            file: &current,
            list: Vec::new(),
            release: &release,
        };
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
        let next = next_link(&mut f, &current, &layout, source.bytes(), &mut seen);
        findings.extend(f.list);
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
            "not a VHD: footer at {:#x}: cookie: found {:?}, expected \"conectix\" (no footer copy at offset 0 either)",
            n.saturating_sub(512),
            String::from_utf8_lossy(&tail[..8])
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
    seen: &mut Vec<PathBuf>,
) -> Option<PathBuf> {
    if layout.disk_type() != Some(DiskType::Differencing) {
        return None;
    }
    let parts = layout.dynamic.as_ref()?.as_ref().ok()?;
    let header = &parts.header;
    let canonical = std::fs::canonicalize(current).unwrap_or_else(|_| current.to_path_buf());
    seen.push(canonical);
    let res = parent::resolve(current, bytes, header);
    let Some(found) = res.found.clone() else {
        f.error(
            "PARENT_NOT_FOUND",
            parts.header_offset + 64,
            res.not_found_message(header),
        );
        return None;
    };
    let found_canonical = std::fs::canonicalize(&found).unwrap_or_else(|_| found.clone());
    if seen.contains(&found_canonical) {
        f.error(
            "PARENT_LOOP",
            parts.header_offset + 576,
            format!(
                "parent {} is already in the chain: the chain loops",
                found.display()
            ),
        );
        return None;
    }
    if seen.len() >= MAX_CHAIN_DEPTH {
        f.error(
            "CHAIN_TOO_DEEP",
            parts.header_offset + 576,
            format!("the chain has more than {MAX_CHAIN_DEPTH} links"),
        );
        return None;
    }
    match parent::parent_unique_id(&found) {
        Ok(id) if id == header.parent_unique_id => Some(found),
        Ok(id) => {
            f.error(
                "PARENT_ID_MISMATCH",
                parts.header_offset + 40,
                format!(
                    "parent unique id: found {} in {}, expected {} (the child's header)",
                    uuid::Uuid::from_bytes(id),
                    found.display(),
                    uuid::Uuid::from_bytes(header.parent_unique_id)
                ),
            );
            None
        }
        Err(e) => {
            f.error("PARENT_NOT_VHD", parts.header_offset + 64, e.to_string());
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
