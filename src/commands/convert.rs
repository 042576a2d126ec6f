//! `vhdkit convert`: a raw disk or any VHD (a chain is flattened) written
//! as a fixed or dynamic VHD or a sparse raw file, through the writer.

use std::path::{Path, PathBuf};

use crate::disk::{self, ParentOptions};
use crate::pipeline::Progress;
use crate::report::{block_size_u32, written_text, Bar, Outcome, ParentArgs, ToArg, WriteArgs};
use crate::writer::{require_clean, write_disk};
pub use crate::writer::{Report, Target, WriteOptions as ConvertOptions, DEFAULT_CREATOR};
use crate::Result;

/// `vhdkit convert`.
pub fn convert(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    convert_with(input, output, opts, &ParentOptions::default(), progress)
}

/// [`convert`], with the input's parents also looked for where `parents`
/// allow.
pub fn convert_with(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
    parents: &ParentOptions,
    progress: &dyn Progress,
) -> Result<Report> {
    require_clean(input, parents)?;
    let disk = disk::open_with(input, parents)?;
    write_disk(disk.as_ref(), input, output, opts, progress)
}

/// Convert a raw disk or any VHD (a chain is flattened) to a fixed or
/// dynamic VHD or a sparse raw file, at the exact size.
///
/// The output's original size = current size = the input's virtual size
/// (rounded up to --align), with the specification's geometry and a
/// creator every consumer reads by current size.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// Input: raw, fixed, dynamic or differencing VHD (read only).
    pub input: PathBuf,
    /// Output path (written to a temporary file beside it, then renamed).
    pub output: PathBuf,
    /// Output format.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub to: ToArg,
    /// Block size of a dynamic output (K/M suffixes).
    #[cfg_attr(feature = "cli", arg(long, default_value = "2M", value_parser = crate::report::parse_size_arg))]
    pub block_size: u64,
    /// Round the virtual size up to a multiple of this (e.g. 1M for Azure).
    #[cfg_attr(feature = "cli", arg(long, default_value = "512", value_parser = crate::report::parse_size_arg))]
    pub align: u64,
    /// Creator application written in the footer: win, tap, qemu, qem2, vpc, vs, d2v, CTXS, vbox, wa.
    #[cfg_attr(feature = "cli", arg(long, default_value = DEFAULT_CREATOR))]
    pub creator: String,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub write: WriteArgs,
}

/// `vhdkit convert`.
pub fn run(args: Args) -> Result<Outcome> {
    let opts = ConvertOptions {
        to: args.to.into(),
        block_size: block_size_u32(args.block_size)?,
        align: args.align,
        creator: args.creator,
        digests: args.write.digests(),
        no_sync: args.write.no_sync,
    };
    let bar = Bar::for_file(&args.input, args.write.out.quiet);
    let parents = args.parents.options();
    let r = convert_with(&args.input, &args.output, &opts, &parents, &bar);
    drop(bar);
    Outcome::ok(&r?, written_text)
}
