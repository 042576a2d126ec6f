//! `vhdkit checksum`: MD5, SHA-512 and CRC32 of a file's bytes exactly as
//! uploaded, from the one digest engine.

use std::path::Path;

use crate::disk::Source;
use crate::pipeline::digest::{digest_source, Algo, Digests};
use crate::pipeline::Progress;
use crate::report::{digest_lines, Algos, Bar, Outcome, OutputArgs};
use crate::Result;

/// `vhdkit checksum`: digests of a file's bytes exactly as uploaded.
pub fn checksum(path: &Path, algos: &[Algo], progress: &dyn Progress) -> Result<Digests> {
    let source = Source::open(path)?;
    Ok(digest_source(&source, algos, None, progress)?.0)
}

/// MD5, SHA-512 and CRC32 of a file's bytes, as Glance computes them on
/// upload.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The file, exactly as it would be uploaded.
    pub file: std::path::PathBuf,
    /// Which digests (comma-separated): md5, sha512, crc32, all.
    #[arg(long, default_value = "md5,sha512", value_parser = Algos::parse)]
    pub algo: Algos,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// `vhdkit checksum`.
pub fn run(args: Args) -> Result<Outcome> {
    let bar = Bar::for_file(&args.file, args.out.quiet);
    let d = checksum(&args.file, &args.algo.0, &bar)?;
    drop(bar);
    let name = args.file.display().to_string();
    Outcome::ok(&d, |d| digest_lines(d, &name))
}
