//! `vhdkit checksum`: MD5, SHA-512 and CRC32 of a file's bytes exactly as
//! uploaded, from the one digest engine.

use std::path::Path;

use crate::disk::source::open_stream;
use crate::disk::Source;
use crate::pipeline::digest::{digest_source, digest_stream, Algo, Digests};
use crate::pipeline::Progress;
use crate::report::{digest_lines, Algos, Bar, Outcome, OutputArgs};
use crate::Result;

/// `vhdkit checksum`: digests of a file's bytes exactly as uploaded. A
/// regular file is mapped; `-` (standard input), a pipe or a character
/// device is read as a stream to its end.
pub fn checksum(path: &Path, algos: &[Algo], progress: &dyn Progress) -> Result<Digests> {
    let (file, len) = open_stream(path)?;
    if len.is_some() && path.as_os_str() != "-" {
        drop(file);
        let source = Source::open(path)?;
        return Ok(digest_source(&source, algos, None, progress)?.0);
    }
    digest_stream(file, path, algos, progress)
}

/// MD5, SHA-512 and CRC32 of a file's bytes, as Glance computes them on
/// upload.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The file, exactly as it would be uploaded; `-` reads standard input
    /// (pipes and character devices are read as streams).
    pub file: std::path::PathBuf,
    /// Which digests (comma-separated): md5, sha512, crc32, all.
    #[cfg_attr(feature = "cli", arg(long, default_value = "md5,sha512", value_parser = Algos::parse))]
    pub algo: Algos,
    #[cfg_attr(feature = "cli", command(flatten))]
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
