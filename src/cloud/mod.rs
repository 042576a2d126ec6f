//! Cloud policy, pure: what Glance, Nova and the targets (Rackspace,
//! XenServer, Azure) accept, decided from metadata and facts handed in,
//! never from a file opened here.
//!
//! - [`nova`]: `auto_disk_config`'s verdict and the report of a resize;
//! - [`record`]: the Glance v2 image record a file would get;
//! - [`lint`]: Glance's property rules;
//! - [`targets`]: each target's rules, the Swift segment plan, the
//!   XenServer chain rules;
//! - [`flavor`]: Nova's checks of an image against a flavor.
//!
//! Every rule gives a [`Line`]: a stable code, PASS/WARN/FAIL, what was
//! found and the fix. Sits above `fs/` and `partition/` (it names their
//! types), below `grow/` and the commands.

pub mod flavor;
pub mod lint;
pub mod nova;
pub mod record;
pub mod targets;

use serde::Serialize;

/// The outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// The rule holds.
    Pass,
    /// Works, but worth a look.
    Warn,
    /// Will not work as is.
    Fail,
}

impl Status {
    /// `PASS`, `WARN` or `FAIL`.
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
#[non_exhaustive]
pub struct Line {
    /// The rule's stable code.
    pub code: String,
    /// PASS, WARN or FAIL.
    pub status: Status,
    /// What was found, with the values.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// How to fix it, when there is a fix.
    pub fix: Option<String>,
}

/// The answer of a set of rules: ready when none FAILs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// No line FAILs.
    pub ready: bool,
    /// Lines that FAIL.
    pub fail: usize,
    /// Lines that WARN.
    pub warn: usize,
    /// Lines that PASS.
    pub pass: usize,
}

impl Verdict {
    /// Counts the outcomes.
    pub fn tally(statuses: impl IntoIterator<Item = Status>) -> Verdict {
        let mut v = Verdict::default();
        for s in statuses {
            match s {
                Status::Pass => v.pass += 1,
                Status::Warn => v.warn += 1,
                Status::Fail => v.fail += 1,
            }
        }
        v.ready = v.fail == 0;
        v
    }

    /// `Verdict: READY for glance (0 FAIL, 1 WARN, 9 PASS)`.
    pub fn line(&self, target: &str) -> String {
        format!(
            "Verdict: {} for {target} ({} FAIL, {} WARN, {} PASS)",
            if self.ready { "READY" } else { "NOT READY" },
            self.fail,
            self.warn,
            self.pass
        )
    }
}

impl Line {
    /// A line without a fix.
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
