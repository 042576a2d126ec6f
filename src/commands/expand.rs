//! `vhdkit expand`: what the hypervisor does to a disk at boot with
//! `auto_disk_config=True`, done to a copy. The engine is [`crate::grow`];
//! Nova's verdict is [`crate::cloud::nova`]'s; this is the command.

use std::path::PathBuf;

pub use crate::cloud::nova::{ExpandReport, FsGrowth, Verdict};
pub use crate::grow::{expand, plan_expand, ExpandOptions};
use crate::partition::{GrowRule, PartitionInfo, TableKind};
use crate::report::{block_size_u32, Bar, Outcome, OutputArgs, ParentArgs, ToArg};
use crate::{Error, Result};

/// How partition 1 grows, for the command line.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum RuleArg {
    /// Nova's XenAPI driver: same start, end at the last sector (GPT: last usable LBA).
    Nova,
    /// cloud-utils growpart since mid-2026: end at most 34 sectors before the end, length in whole MiB.
    Growpart,
    /// cloud-utils growpart 0.33 (Debian 12, Ubuntu): end at disk sectors - 34, no MiB rounding.
    GrowpartLegacy,
}

/// Simulate auto_disk_config: grow the disk, its partition and its
/// filesystem to a flavor's root disk size, into a new image.
///
/// Exit status: 0 grown (or --disk-only), 1 refused (Nova's reason
/// printed, nothing written), 2 could not run.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// Input: raw or any VHD (read only).
    pub input: PathBuf,
    /// Output image (not needed with --dry-run).
    pub output: Option<PathBuf>,
    /// The flavor's root disk size (K/M/G/T suffixes; root_gb N is NG).
    #[cfg_attr(feature = "cli", arg(long, value_parser = crate::report::parse_size_arg))]
    pub size: u64,
    /// How partition 1 grows.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "nova"))]
    pub rule: RuleArg,
    /// Output format.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value = "dynamic"))]
    pub to: ToArg,
    /// Print the plan and the verdict; write nothing.
    #[cfg_attr(feature = "cli", arg(long))]
    pub dry_run: bool,
    /// Grow only the disk when the partition or filesystem cannot be grown.
    #[cfg_attr(feature = "cli", arg(long))]
    pub disk_only: bool,
    /// Write a differencing VHD over INPUT holding only the changed sectors.
    #[cfg_attr(feature = "cli", arg(long))]
    pub as_child: bool,
    /// Block size of a dynamic output (an --as-child delta over a VHD takes its parent's).
    #[cfg_attr(feature = "cli", arg(long, default_value = "2M", value_parser = crate::report::parse_size_arg))]
    pub block_size: u64,
    /// Creator application of the output.
    #[cfg_attr(feature = "cli", arg(long, default_value = crate::writer::DEFAULT_CREATOR))]
    pub creator: String,
    /// Rename OUTPUT into place without fsync (see README: Durability).
    #[cfg_attr(feature = "cli", arg(long))]
    pub no_sync: bool,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub parents: ParentArgs,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: OutputArgs,
}

/// `vhdkit expand`.
pub fn run(args: Args) -> Result<Outcome> {
    let opts = ExpandOptions {
        size: args.size,
        rule: match args.rule {
            RuleArg::Nova => GrowRule::Nova,
            RuleArg::Growpart => GrowRule::Growpart,
            RuleArg::GrowpartLegacy => GrowRule::GrowpartLegacy,
        },
        to: args.to.into(),
        disk_only: args.disk_only,
        as_child: args.as_child,
        block_size: block_size_u32(args.block_size)?,
        creator: args.creator,
        no_sync: args.no_sync,
        parents: args.parents.options(),
    };
    let report = if args.dry_run {
        plan_expand(&args.input, &opts)?
    } else {
        let output = args
            .output
            .ok_or_else(|| Error::Usage("expand: OUTPUT is required unless --dry-run".into()))?;
        let bar = Bar::new(args.size, args.out.quiet);
        let r = expand(&args.input, &output, &opts, &bar);
        drop(bar);
        r?
    };
    let refused = !report.verdict.grown && !report.verdict.disk_only;
    Outcome::problems_unless(!refused, &report, text)
}

/// The human rendering of the plan and verdict, from the report alone.
pub fn text(report: &ExpandReport) -> String {
    use std::fmt::Write;
    let r = report;
    let mut out = String::new();
    let _ = writeln!(out, "disk: {} -> {} bytes", r.old_size, r.new_size);
    let _ = writeln!(out, "partition table: {}", table_name(r.table_kind));
    partition_table(&mut out, "partitions before", &r.partitions_before);
    partition_table(&mut out, "partitions after", &r.partitions_after);
    if let Some(fs) = &r.filesystem {
        fs_table(&mut out, fs);
    }
    let _ = writeln!(
        out,
        "{}: {} bytes in {} range(s)",
        if r.dry_run { "would change" } else { "changed" },
        r.changed_bytes,
        r.changed.len()
    );
    for (off, len) in r.changed.iter().take(20) {
        let _ = writeln!(out, "  {off:#x} +{len}");
    }
    if r.changed.len() > 20 {
        let _ = writeln!(out, "  ... {} more", r.changed.len() - 20);
    }
    let v = &r.verdict;
    let _ = writeln!(out, "verdict: {}", v.nova);
    let _ = writeln!(out, "         {}", v.vhdkit);
    for n in &v.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if let Some(w) = &r.written {
        let _ = writeln!(
            out,
            "wrote {} ({}, {} bytes)",
            w.output.display(),
            w.output_kind,
            w.file_size
        );
    }
    out
}

/// How a reader names a partition table kind.
fn table_name(kind: TableKind) -> &'static str {
    match kind {
        TableKind::Mbr => "MBR",
        TableKind::Gpt => "GPT",
        TableKind::None => "none",
    }
}

fn partition_table(out: &mut String, title: &str, parts: &[PartitionInfo]) {
    use std::fmt::Write;
    let _ = writeln!(out, "{title}:");
    if parts.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for p in parts {
        let _ = writeln!(
            out,
            "  {:>2}  start {:>12}  end {:>12}  sectors {:>12}  type {}{}",
            p.number,
            p.start_lba,
            p.end_lba,
            p.size_sectors,
            p.type_id,
            if p.bootable { "  boot" } else { "" }
        );
    }
}

/// The filesystem before and after, one row per count (a FAT block is a
/// cluster; groups and inodes are ext's only).
fn fs_table(out: &mut String, fs: &FsGrowth) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "filesystem: {} at {:#x}: {} -> {} bytes",
        fs.kind, fs.offset_bytes, fs.size_before_bytes, fs.size_after_bytes
    );
    let unit = if fs.kind.starts_with("fat") {
        "cluster"
    } else {
        "block"
    };
    let (b, a) = (&fs.before, &fs.after);
    let n = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let rows = [
        ("kind".to_string(), b.kind.clone(), a.kind.clone()),
        (
            format!("{unit} size"),
            b.block_size.to_string(),
            a.block_size.to_string(),
        ),
        (
            format!("{unit}s"),
            b.blocks.to_string(),
            a.blocks.to_string(),
        ),
        ("groups".to_string(), n(b.groups), n(a.groups)),
        ("inodes".to_string(), n(b.inodes), n(a.inodes)),
        (format!("free {unit}s"), n(b.free_blocks), n(a.free_blocks)),
    ];
    let _ = writeln!(out, "  {:<14} {:>14} {:>14}", "", "before", "after");
    for (name, before, after) in rows {
        if before == "-" && after == "-" {
            continue;
        }
        let _ = writeln!(out, "  {name:<14} {before:>14} {after:>14}");
    }
}
