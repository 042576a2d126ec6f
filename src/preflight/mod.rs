//! `preflight`: is this file ready to upload to Glance and boot with Nova on
//! a given target? One read of the image gives the digests Glance will
//! record (and, for Swift, each segment's MD5); `check` gives the structure;
//! the rest is pure judgement on metadata, shown as PASS/WARN/FAIL lines.
//!
//! Sections, in report order: structure ([`crate::check`]), the image
//! record ([`record`]), the property lint ([`lint`]), the target rules
//! ([`targets`]), the flavor checks ([`flavor`]), the verdict.

pub mod flavor;
pub mod lint;

use serde::Serialize;

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One rule's result: a stable code, the outcome, what was found, and the
/// fix as a runnable command where there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub code: String,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Line {
    pub fn new(code: &str, status: Status, message: String) -> Line {
        Line {
            code: code.to_string(),
            status,
            message,
            fix: None,
        }
    }

    /// The same line with a fix.
    pub fn with_fix(mut self, fix: String) -> Line {
        self.fix = Some(fix);
        self
    }
}
