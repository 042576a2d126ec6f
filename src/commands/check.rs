//! `vhdkit check`: every structure and checksum of a VHD (and its
//! parents), as findings with stable codes. The rules are the `check`
//! layer's ([`crate::check`]); this is the command around them.

use std::path::PathBuf;

use crate::check::{check_path, Options, Report};
use crate::report::{Outcome, OutputArgs, ParentArgs};
use crate::Result;

/// Verify every structure and checksum of a VHD (and its parents).
///
/// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 not a
/// VHD at all or bad usage.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The VHD to check.
    pub image: PathBuf,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: OutputArgs,
}

/// `vhdkit check`.
pub fn run(args: Args) -> Result<Outcome> {
    let options = Options {
        parents: args.parents.options(),
        ..Options::default()
    };
    let report = check_path(&args.image, &options)?;
    Outcome::problems_unless(report.ok, &report, Report::to_text)
}
