//! `repair`: a repaired copy when the damage can be undone without guessing:
//! a missing or damaged footer at the end restored from a valid copy at
//! offset 0, or a damaged copy at offset 0 restored from a valid footer at
//! the end. Anything else is refused with the check's findings.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::Serialize;

use crate::check::{self, Finding, Severity};
use crate::disk::ParentOptions;
use crate::disk::Source;
use crate::format::image::TailFooter;
use crate::format::{Footer, Layout, FOOTER_SIZE};
use crate::report::{Outcome, OutputArgs, ParentArgs};
use crate::writer::Output;
use crate::{Error, Result};

/// Codes `repair` knows how to fix.
pub const REPAIRABLE: &[&str] = &[
    "FOOTER_MISSING",
    "FOOTER_CHECKSUM",
    "FOOTER_COPY",
    "FOOTER_COPIES_DIFFER",
];

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    pub action: String,
    pub fixed: Vec<Finding>,
}

/// The fix to apply, decided from the layout alone.
enum Fix {
    /// Write the head copy over the last 512 bytes (which held a damaged footer).
    TailFromHead { footer: Footer, at: u64 },
    /// Append the head copy after the last structure (the footer was lost).
    AppendTail { footer: Footer, at: u64 },
    /// Write the tail footer over the copy at offset 0.
    HeadFromTail { footer: Footer },
}

fn valid(f: &Result<Footer, crate::format::FormatError>) -> Option<&Footer> {
    f.as_ref()
        .ok()
        .filter(|f| f.checksum == f.computed_checksum())
}

fn decide(layout: &Layout) -> Option<Fix> {
    let head = layout.head_footer.as_ref().and_then(valid);
    let tail = valid(&layout.tail_footer);
    match (head, tail) {
        (Some(h), None) => {
            let end = layout.structures_end()?;
            let size = layout.file_size;
            if layout.tail_kind != TailFooter::Missing || size >= end + 512 {
                // The last sector is where the footer belongs.
                let at = if layout.tail_kind == TailFooter::Missing {
                    size - 512
                } else {
                    layout.footer_offset
                };
                (at >= end).then(|| Fix::TailFromHead {
                    footer: h.clone(),
                    at,
                })
            } else if size == end {
                Some(Fix::AppendTail {
                    footer: h.clone(),
                    at: end,
                })
            } else {
                None
            }
        }
        (None, Some(t)) if layout.head_footer.is_some() => {
            Some(Fix::HeadFromTail { footer: t.clone() })
        }
        _ => None,
    }
}

/// Why the surviving footer copy cannot be trusted, if it cannot: the
/// damaged copy (when it still parses) must equal it but for the checksum,
/// or carry the survivor's checksum (damaged after it was sealed); and its
/// size must agree with the rest of the file: for a fixed
/// disk the data before the footer, for a dynamic or differencing disk the
/// BAT (as many entries as the size needs, no block beyond it).
fn distrust(layout: &Layout, fix: &Fix) -> Option<String> {
    let (survivor, damaged) = match fix {
        Fix::TailFromHead { footer, .. } | Fix::AppendTail { footer, .. } => {
            (footer, layout.tail_footer.as_ref().ok())
        }
        Fix::HeadFromTail { footer } => (footer, layout.head_footer.as_ref()?.as_ref().ok()),
    };
    if let Some(other) = damaged {
        let (mut a, mut b) = (survivor.to_bytes(), other.to_bytes());
        for x in [&mut a, &mut b] {
            if let Some(sum) = x.get_mut(64..68) {
                sum.fill(0);
            }
        }
        // A copy damaged after it was sealed still carries the survivor's
        // checksum; one that differs and was sealed otherwise is another
        // footer, and which one is right would be a guess.
        if a != b && other.checksum != survivor.checksum {
            return Some(format!(
                "the two footer copies differ beyond the checksum (current size {} and {}, unique id {} and {}): which one is right would be a guess",
                survivor.current_size,
                other.current_size,
                uuid::Uuid::from_bytes(survivor.unique_id),
                uuid::Uuid::from_bytes(other.unique_id)
            ));
        }
    }
    let size = survivor.current_size;
    match &layout.dynamic {
        None => {
            let data = layout.file_size.saturating_sub(FOOTER_SIZE as u64);
            (data != size).then(|| {
                format!("the surviving footer says {size} bytes, but the fixed disk holds {data} bytes of data")
            })
        }
        Some(Err(e)) => Some(format!("the dynamic header is damaged: {e}")),
        Some(Ok(parts)) => {
            let bs = u64::from(parts.header.block_size);
            let entries = u64::from(parts.header.max_table_entries);
            let needed = if bs == 0 {
                None
            } else {
                Some(size.div_ceil(bs))
            };
            let last_used = parts.bat.as_ref().ok().and_then(|bat| {
                bat.entries
                    .iter()
                    .rposition(|&e| e != crate::format::BAT_UNUSED)
            });
            let beyond = last_used.is_some_and(|i| needed.is_some_and(|n| i as u64 >= n));
            (needed != Some(entries) || beyond).then(|| {
                format!(
                    "the surviving footer's size {size} does not match the BAT ({entries} entries of {bs} bytes{})",
                    if beyond { ", with data blocks beyond that size" } else { "" }
                )
            })
        }
    }
}

/// How `repair` writes and where it may look for parents.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rename the output into place without fsync.
    pub no_sync: bool,
    /// Where a differencing disk's parent may be looked up (for the checks
    /// before and after the repair).
    pub parents: ParentOptions,
}

/// Writes a repaired copy of `input` to `output`, synced.
pub fn repair(input: &Path, output: &Path) -> Result<Repair> {
    repair_with(input, output, &Options::default())
}

/// Writes a repaired copy of `input` to `output`. The copy is checked before
/// it is renamed into place: a copy that still fails is never committed.
pub fn repair_with(input: &Path, output: &Path, opts: &Options) -> Result<Repair> {
    let check_opts = check::Options {
        parents: opts.parents.clone(),
        ..check::Options::default()
    };
    let report = check::check_path(input, &check_opts)?;
    let errors: Vec<&Finding> = report.errors().collect();
    if errors.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no errors to repair",
            input.display()
        )));
    }
    let unfixable: Vec<&Finding> = errors
        .iter()
        .copied()
        .filter(|f| !REPAIRABLE.contains(&f.code) || f.file != input)
        .collect();
    let source = Source::open(input)?;
    let layout = Layout::parse(source.bytes()).ok_or_else(|| Error::NotVhd {
        path: input.to_path_buf(),
        detail: check::not_a_vhd_message(source.bytes()),
    })?;
    let fix = if unfixable.is_empty() {
        decide(&layout)
    } else {
        None
    };
    let why = fix.as_ref().and_then(|f| distrust(&layout, f));
    let (Some(fix), None) = (fix, &why) else {
        let mut list: Vec<String> = errors
            .iter()
            .map(|f| format!("{} at {:#x}: {}", f.code, f.offset, f.message))
            .collect();
        list.extend(why);
        return Err(Error::Check {
            path: input.to_path_buf(),
            count: errors.len(),
            first: format!(
                "cannot be repaired without guessing:\n  {}",
                list.join("\n  ")
            ),
        });
    };
    let mut out = Output::create(output, &[input])?.no_sync(opts.no_sync);
    let bytes = source.bytes();
    let (action, keep, patch): (String, u64, (u64, [u8; FOOTER_SIZE])) = match &fix {
        Fix::TailFromHead { footer, at } => (
            format!("restored the footer at {at:#x} from the copy at offset 0"),
            *at,
            (*at, footer.to_bytes()),
        ),
        Fix::AppendTail { footer, at } => (
            format!("appended the missing footer at {at:#x} from the copy at offset 0"),
            *at,
            (*at, footer.to_bytes()),
        ),
        Fix::HeadFromTail { footer } => (
            "restored the footer copy at offset 0 from the footer at the end".to_string(),
            layout.file_size,
            (0, footer.to_bytes()),
        ),
    };
    let keep_len = usize::try_from(keep).map_err(|_| Error::Usage("file too large".into()))?;
    write_sparse(out.file_mut(), bytes.get(..keep_len).unwrap_or(bytes))
        .map_err(|e| Error::io(out.target(), "write", e))?;
    out.file()
        .write_all_at(&patch.1, patch.0)
        .map_err(|e| Error::io(out.target(), "write footer", e))?;
    // Checked where it lies (beside OUT, so relative parents resolve the
    // same); a failing copy is dropped with its temporary file.
    let after = check::check_path(out.temp_path(), &check_opts)?;
    if let Some(bad) = after
        .findings
        .iter()
        .find(|f| f.severity == Severity::Error)
    {
        return Err(Error::Check {
            path: output.to_path_buf(),
            count: after.error_count(),
            first: format!(
                "the repaired copy still fails: {} at {:#x}: {}",
                bad.code, bad.offset, bad.message
            ),
        });
    }
    out.commit()?;
    Ok(Repair {
        action,
        fixed: errors.into_iter().cloned().collect(),
    })
}

/// Writes `data` to `file` from offset 0, leaving holes where whole 64 KiB
/// runs are zero.
pub fn write_sparse(file: &mut std::fs::File, data: &[u8]) -> std::io::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let mut at = 0usize;
    for chunk in data.chunks(CHUNK) {
        if chunk.iter().any(|&b| b != 0) {
            file.write_all_at(chunk, at as u64)?;
        }
        at += chunk.len();
    }
    file.set_len(data.len() as u64)?;
    file.flush()
}

/// Write a repaired copy when the damage is recoverable without guessing
/// (a footer restored from its valid copy). IMAGE is never modified.
///
/// Exit status: 0 repaired, 1 damage that cannot be repaired without
/// guessing (nothing written), 2 could not run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The damaged VHD (read only).
    pub image: std::path::PathBuf,
    /// Where to write the repaired copy.
    pub out: std::path::PathBuf,
    /// Rename OUT into place without fsync (see README: Durability).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_sync: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub output: OutputArgs,
}

/// `vhdkit repair`.
pub fn run(args: Args) -> Result<Outcome> {
    let opts = Options {
        no_sync: args.no_sync,
        parents: args.parents.options(),
    };
    let r = repair_with(&args.image, &args.out, &opts)?;
    let out = args.out.display().to_string();
    Outcome::ok(&r, |r| format!("{out}: {}\n", r.action))
}
