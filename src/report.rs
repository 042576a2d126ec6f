//! What every command hands back to the binary: an [`Outcome`], one value
//! rendered two ways. A command builds one report (a struct that derives
//! `Serialize`), renders its text from that same value, and says which exit
//! status it means; `--json` prints the value, otherwise the text. Errors
//! become JSON too ([`error_json`]): a refusal is
//! `{"refused": {"code", "message"}}` (exit 1), anything that could not run
//! `{"error": {"kind", "message", "path"}}` (exit 2).
//!
//! Also the flags every command shares ([`OutputArgs`]), the progress bar,
//! and small text helpers the renderers share. Below the commands, above
//! every library layer; prints nothing itself.

use serde::Serialize;

use crate::disk::ParentOptions;
use crate::error::{EXIT_OK, EXIT_PROBLEMS};
use crate::pipeline::digest::{Algo, Digests};
use crate::pipeline::Progress;
use crate::writer::Target;
use crate::{Error, Result};

/// The flags every command takes.
#[derive(Debug, Clone, Copy, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct OutputArgs {
    /// Print the report as JSON (also for refusals and errors).
    #[cfg_attr(feature = "cli", arg(long))]
    pub json: bool,
    /// No progress bar (preflight: also only its WARN and FAIL lines and the verdict).
    #[cfg_attr(feature = "cli", arg(long, short))]
    pub quiet: bool,
}

/// Where a differencing disk's parents may be looked for beyond the child's
/// own folder: the flags of every command that reads a chain.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ParentArgs {
    /// The parent of IMAGE (a differencing disk), used instead of its locators; its unique id must match.
    #[cfg_attr(feature = "cli", arg(long, value_name = "PATH"))]
    pub parent: Option<std::path::PathBuf>,
    /// One more folder to look for parents in (repeatable); by default only the child's own folder is searched.
    #[cfg_attr(feature = "cli", arg(long = "parent-dir", value_name = "DIR"))]
    pub parent_dirs: Vec<std::path::PathBuf>,
}

impl ParentArgs {
    /// The library's options for these flags.
    pub fn options(&self) -> ParentOptions {
        ParentOptions {
            parent: self.parent.clone(),
            search_dirs: self.parent_dirs.clone(),
        }
    }
}

/// A comma-separated list of digests (`md5,sha512`, `all`).
#[derive(Debug, Clone, Default)]
pub struct Algos(pub Vec<Algo>);

impl Algos {
    pub fn parse(text: &str) -> std::result::Result<Algos, String> {
        Algo::parse_list(text).map(Algos)
    }
}

/// A size with an optional K, M, G or T suffix, for clap.
pub fn parse_size_arg(text: &str) -> std::result::Result<u64, String> {
    crate::writer::parse_size(text)
}

/// Output formats, for the command line.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ToArg {
    Fixed,
    Dynamic,
    Raw,
}

impl From<ToArg> for Target {
    fn from(t: ToArg) -> Target {
        match t {
            ToArg::Fixed => Target::Fixed,
            ToArg::Dynamic => Target::Dynamic,
            ToArg::Raw => Target::Raw,
        }
    }
}

/// A block size argument as the `u32` VHD headers hold.
pub fn block_size_u32(bytes: u64) -> Result<u32> {
    let bs = u32::try_from(bytes)
        .map_err(|_| Error::Usage(format!("--block-size {bytes}: too large")))?;
    crate::writer::validate_block_size(bs)?;
    Ok(bs)
}

/// The one-line summary of a write, then its digests if any were asked.
pub fn written_text(r: &crate::writer::Report) -> String {
    let mut out = format!(
        "{} ({}) -> {} ({}): {} bytes virtual, {} bytes file, {} data blocks, {} zero blocks of {} bytes\n",
        r.input.display(),
        r.input_kind.name(),
        r.output.display(),
        r.output_kind,
        r.virtual_size,
        r.file_size,
        r.data_blocks,
        r.zero_blocks,
        r.block_size
    );
    let d = &r.digests;
    if d.md5.is_some() || d.sha512.is_some() || d.crc32.is_some() {
        out.push_str(&digest_lines(d, &r.output.display().to_string()));
    }
    out
}

/// The flags of a command that writes an image: its digests, durability,
/// and the shared output flags.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct WriteArgs {
    /// Digests of the output file computed while it is written: md5, sha512, crc32 (comma-separated) or all.
    #[cfg_attr(feature = "cli", arg(long, value_parser = Algos::parse))]
    pub checksum: Option<Algos>,
    /// Rename OUTPUT into place without fsync (see README: Durability).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_sync: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: OutputArgs,
}

impl WriteArgs {
    /// The digests asked for (none by default).
    pub fn digests(&self) -> Vec<Algo> {
        self.checksum.clone().map(|a| a.0).unwrap_or_default()
    }
}

/// A command's result: the report as JSON, its text rendering, and the
/// exit status it means.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u8,
    pub json: serde_json::Value,
    pub text: String,
}

impl Outcome {
    /// `report` rendered by `text`, exiting with `status`.
    pub fn new<T: Serialize>(
        report: &T,
        text: impl FnOnce(&T) -> String,
        status: u8,
    ) -> Result<Outcome> {
        let json = serde_json::to_value(report)
            .map_err(|e| Error::Usage(format!("report as JSON: {e}")))?;
        Ok(Outcome {
            status,
            json,
            text: text(report),
        })
    }

    /// A report that found nothing wrong (exit 0).
    pub fn ok<T: Serialize>(report: &T, text: impl FnOnce(&T) -> String) -> Result<Outcome> {
        Outcome::new(report, text, EXIT_OK)
    }

    /// Exit 0 when `fine`, else 1 ("problems found").
    pub fn problems_unless<T: Serialize>(
        fine: bool,
        report: &T,
        text: impl FnOnce(&T) -> String,
    ) -> Result<Outcome> {
        Outcome::new(report, text, if fine { EXIT_OK } else { EXIT_PROBLEMS })
    }
}

/// The JSON of an error: `{"refused": {...}}` for a refusal, else
/// `{"error": {...}}`.
pub fn error_json(e: &Error) -> serde_json::Value {
    let message = e.to_string();
    match e.refusal_code() {
        Some(code) => serde_json::json!({ "refused": { "code": code, "message": message } }),
        None => serde_json::json!({
            "error": {
                "kind": e.kind().name(),
                "message": message,
                "path": e.path().map(|p| p.display().to_string()),
            }
        }),
    }
}

/// A progress bar on stderr when it is a terminal and not `quiet`. Without
/// the `cli` feature (no indicatif) it shows nothing.
pub struct Bar {
    #[cfg(feature = "cli")]
    bar: indicatif::ProgressBar,
}

impl Bar {
    #[cfg(feature = "cli")]
    pub fn new(total: u64, quiet: bool) -> Bar {
        use std::io::IsTerminal;
        if quiet || !std::io::stderr().is_terminal() {
            return Bar {
                bar: indicatif::ProgressBar::hidden(),
            };
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Bar { bar }
    }

    /// No bar: the library was built without the `cli` feature.
    #[cfg(not(feature = "cli"))]
    pub fn new(_total: u64, _quiet: bool) -> Bar {
        Bar {}
    }

    /// A bar sized to a file's length (0 when it cannot be read).
    pub fn for_file(path: &std::path::Path, quiet: bool) -> Bar {
        Bar::new(std::fs::metadata(path).map_or(0, |m| m.len()), quiet)
    }
}

impl Progress for Bar {
    fn advance(&self, _bytes: u64) {
        #[cfg(feature = "cli")]
        self.bar.inc(_bytes);
    }
}

/// Clears the bar (commands drop it before printing their report).
impl Drop for Bar {
    fn drop(&mut self) {
        #[cfg(feature = "cli")]
        self.bar.finish_and_clear();
    }
}

/// `md5     HEX  NAME` lines, then `size    N  NAME`.
pub fn digest_lines(d: &Digests, name: &str) -> String {
    let mut out = String::new();
    for (label, v) in [("md5", &d.md5), ("sha512", &d.sha512), ("crc32", &d.crc32)] {
        if let Some(v) = v {
            out.push_str(&format!("{label:<8}{v}  {name}\n"));
        }
    }
    out.push_str(&format!("size    {}  {name}\n", d.size));
    out
}

/// "1073741824 (1 GiB)".
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({v:.2} {unit})")
    }
}
