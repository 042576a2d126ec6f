//! `vhdkit bench`: how fast each command is on a disk of a given size and
//! fill, and how that grows with size; optionally side by side with the
//! tools people use today.
//!
//! Orchestration and report types live here; [`generate`] makes test disks,
//! [`stages`] times each vhdkit command in a child process, [`peers`] runs
//! the comparisons, [`measure`] reaps a child and reads what it used. The
//! binary under test is given as a path (the running `vhdkit` for the
//! command, Cargo's release binary for `cargo bench`), so this module never
//! measures itself. A user's image (`--image`) is only read.

/// Arguments of mixed string and path types, as `OsString`s.
macro_rules! args {
    ($($a:expr),* $(,)?) => {
        vec![$(std::ffi::OsString::from(AsRef::<std::ffi::OsStr>::as_ref(&$a))),*]
    };
}

pub mod generate;
pub mod measure;
pub mod peers;
pub mod stages;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::disk::Kind;
use crate::report::{block_size_u32, parse_size_arg, size_text, Outcome, OutputArgs};
use crate::{Error, Result};
pub use generate::{DataKind, GenerateOptions, Generated};
pub use peers::Comparison;
pub use stages::{StageResult, Status};

/// Bytes per second in GB/s (10^9); 0 for no time.
pub fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        // Byte counts far below 2^53: exact enough for a rate.
        #[allow(clippy::cast_precision_loss)]
        let b = bytes as f64;
        b / seconds / 1e9
    } else {
        0.0
    }
}

/// Told as the run moves on (a progress bar, or nothing).
pub trait Steps {
    /// `n` more steps are coming.
    fn add(&self, n: u64);
    /// A step is starting.
    fn step(&self, what: &str);
}

/// No progress display.
pub struct Quiet;
impl Steps for Quiet {
    fn add(&self, _n: u64) {}
    fn step(&self, _what: &str) {}
}

/// An indicatif bar on stderr, shown only when stderr is a terminal.
pub struct TerminalSteps {
    bar: indicatif::ProgressBar,
    started: std::cell::Cell<bool>,
}

impl TerminalSteps {
    pub fn new(quiet: bool) -> TerminalSteps {
        use std::io::IsTerminal;
        let bar = if quiet || !std::io::stderr().is_terminal() {
            indicatif::ProgressBar::hidden()
        } else {
            let b = indicatif::ProgressBar::new(0);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}")
            {
                b.set_style(style);
            }
            b
        };
        TerminalSteps {
            bar,
            started: std::cell::Cell::new(false),
        }
    }
}

impl Steps for TerminalSteps {
    fn add(&self, n: u64) {
        self.bar.inc_length(n);
    }
    fn step(&self, what: &str) {
        if self.started.replace(true) {
            self.bar.inc(1);
        }
        self.bar.set_message(what.to_string());
    }
}

impl Drop for TerminalSteps {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// What `vhdkit bench` does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The binary whose commands are timed.
    pub vhdkit: PathBuf,
    /// Sizes of generated disks (one, or the sweep). Ignored with `image`.
    pub sizes: Vec<u64>,
    pub allocated: f64,
    pub data: DataKind,
    pub block_size: u32,
    pub seed: u64,
    /// A user's image to time instead of generated disks (read only).
    pub image: Option<PathBuf>,
    /// Where the work folder is made (default: the current directory).
    pub dir: Option<PathBuf>,
    pub compare: bool,
    /// Keep the work folder (generated disks).
    pub keep: bool,
    /// Runs per stage and per side of a comparison (median taken).
    pub reps: usize,
}

/// The input of one run.
#[derive(Debug, Clone, Serialize)]
pub struct InputInfo {
    pub path: PathBuf,
    pub kind: Kind,
    pub virtual_size_bytes: u64,
    pub file_size_bytes: u64,
    /// Bytes the file system stores for it (holes excluded).
    pub allocated_bytes: u64,
}

/// Everything measured on one input.
#[derive(Debug, Clone, Serialize)]
pub struct SizeRun {
    pub input: InputInfo,
    /// How the input was made, when it was generated.
    pub generated: Option<Generated>,
    pub stages: Vec<StageResult>,
    pub comparisons: Vec<Comparison>,
}

/// How one stage's time grows across a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Growth {
    pub stage: String,
    /// Wall seconds at each size, in sweep order (`None`: did not run).
    pub wall_seconds: Vec<Option<f64>>,
    /// Seconds per allocated GB (10^9 bytes) at each size: constant when
    /// time is linear in allocated bytes.
    pub seconds_per_allocated_gb: Vec<Option<f64>>,
    /// Seconds per virtual GB at each size: falling when time is flat in
    /// virtual size.
    pub seconds_per_virtual_gb: Vec<Option<f64>>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub vhdkit: PathBuf,
    pub version: String,
    pub cpus: usize,
    pub reps: usize,
    pub block_size_bytes: u32,
    pub work_dir: PathBuf,
    pub kept: bool,
    pub runs: Vec<SizeRun>,
    /// Present for a sweep (two sizes or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub growth: Option<Vec<Growth>>,
}

impl BenchReport {
    /// Whether every stage and comparison ran (skipped stages are fine).
    pub fn all_ran(&self) -> bool {
        self.runs.iter().all(|r| {
            r.stages.iter().all(|s| s.status != Status::Failed)
                && r.comparisons.iter().all(|c| c.error.is_none())
        })
    }
}

/// Runs the benchmark.
pub fn bench(opts: &BenchOptions, steps: &dyn Steps) -> Result<BenchReport> {
    let base = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().map_err(|e| Error::io(Path::new("."), "current dir", e))?,
    };
    let work = tempfile::Builder::new()
        .prefix(".vhdkit-bench-")
        .tempdir_in(&base)
        .map_err(|e| Error::io(&base, "create work folder", e))?;
    let work_dir = work.path().to_path_buf();
    let mut runs = Vec::new();
    let result = (|| -> Result<()> {
        match &opts.image {
            Some(image) => {
                let input = stages::describe(image)?;
                runs.push(run_input(opts, &work_dir, input, None, None, steps)?);
            }
            None => {
                for &size in &opts.sizes {
                    steps.add(1);
                    steps.step(&format!("generate {}", short_size(size)));
                    let path = work_dir.join(format!("disk-{}.raw", short_size(size)));
                    let g = generate::generate(
                        &path,
                        &GenerateOptions {
                            size_bytes: size,
                            allocated: opts.allocated,
                            data: opts.data,
                            block_size_bytes: u64::from(opts.block_size),
                            seed: opts.seed,
                        },
                    )?;
                    let mut g = g;
                    let no_fs = match generate::partition_and_format(&path, size) {
                        Ok(layout) => {
                            g.layout = layout;
                            None
                        }
                        Err(why) => {
                            g.layout = format!("raw data only (no partition: {why})");
                            Some(why)
                        }
                    };
                    let input = stages::describe(&path)?;
                    let run = run_input(opts, &work_dir, input, Some(g), no_fs, steps);
                    if !opts.keep {
                        let _ = std::fs::remove_file(&path);
                    }
                    runs.push(run?);
                }
            }
        }
        Ok(())
    })();
    let kept = opts.keep;
    if kept {
        let _ = work.keep();
    } else {
        drop(work);
    }
    result?;
    let growth = (runs.len() > 1).then(|| growth(&runs));
    Ok(BenchReport {
        vhdkit: opts.vhdkit.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        cpus: rayon::current_num_threads(),
        reps: opts.reps.max(1),
        block_size_bytes: opts.block_size,
        work_dir,
        kept,
        runs,
        growth,
    })
}

fn run_input(
    opts: &BenchOptions,
    work_dir: &Path,
    input: InputInfo,
    generated: Option<Generated>,
    no_fs: Option<String>,
    steps: &dyn Steps,
) -> Result<SizeRun> {
    steps.add(stages::STAGES.len() as u64);
    let work = stages::Work {
        vhdkit: &opts.vhdkit,
        dir: work_dir,
        input: &input,
        block_size: opts.block_size,
        reps: opts.reps,
        no_fs: no_fs.as_deref(),
    };
    let (stage_results, dynamic) = stages::run_all(&work, steps);
    let mut comparisons = Vec::new();
    if opts.compare {
        let pairs = peers::standard_pairs(&peers::Inputs {
            vhdkit: &opts.vhdkit,
            input: &input.path,
            input_is_raw: input.kind == Kind::Raw,
            dynamic: dynamic.as_deref(),
            dir: work_dir,
            label: "",
        });
        steps.add(peers::run_count(&pairs, opts.reps));
        for pair in &pairs {
            comparisons.extend(peers::compare(pair, opts.reps, steps));
        }
    }
    if let Some(d) = &dynamic {
        let _ = std::fs::remove_file(d);
    }
    Ok(SizeRun {
        input,
        generated,
        stages: stage_results,
        comparisons,
    })
}

fn growth(runs: &[SizeRun]) -> Vec<Growth> {
    let per_gb = |secs: f64, bytes: u64| {
        // A rate for display; precision loss above 2^53 bytes is irrelevant.
        #[allow(clippy::cast_precision_loss)]
        let gb = bytes as f64 / 1e9;
        (gb > 0.0).then(|| secs / gb)
    };
    stages::STAGES
        .iter()
        .map(|&name| {
            let found: Vec<Option<(&StageResult, &InputInfo)>> = runs
                .iter()
                .map(|r| {
                    r.stages
                        .iter()
                        .find(|s| s.name == name && s.status == Status::Ok)
                        .map(|s| (s, &r.input))
                })
                .collect();
            Growth {
                stage: name.into(),
                wall_seconds: found
                    .iter()
                    .map(|f| f.map(|(s, _)| s.wall_seconds))
                    .collect(),
                seconds_per_allocated_gb: found
                    .iter()
                    .map(|f| f.and_then(|(s, i)| per_gb(s.wall_seconds, i.allocated_bytes)))
                    .collect(),
                seconds_per_virtual_gb: found
                    .iter()
                    .map(|f| f.and_then(|(s, i)| per_gb(s.wall_seconds, i.virtual_size_bytes)))
                    .collect(),
            }
        })
        .collect()
}

/// `64M`, `1G`, `1536M`: a size as it would be typed.
pub fn short_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes != 0 && bytes % (1u64 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn mib(bytes: u64) -> String {
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let m = bytes as f64 / f64::from(1u32 << 20);
    format!("{m:.1} MiB")
}

impl BenchReport {
    /// Tables for a terminal.
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "vhdkit {} ({}), {} threads, {} run(s) per measurement (median)",
            self.version,
            self.vhdkit.display(),
            self.cpus,
            self.reps
        );
        for run in &self.runs {
            let i = &run.input;
            let _ = writeln!(
                t,
                "\n{} ({}): {} virtual, {} allocated",
                i.path.display(),
                i.kind.name(),
                size_text(i.virtual_size_bytes),
                size_text(i.allocated_bytes)
            );
            if let Some(g) = &run.generated {
                let _ = writeln!(
                    t,
                    "generated {} of {} blocks ({} data, seed {:#x}) in {:.3} s: {:.2} GB/s written, {:.3} s CPU",
                    g.allocated_blocks, g.blocks, g.data.name(), g.seed, g.wall_seconds, g.write_gbps, g.cpu_seconds
                );
                let _ = writeln!(t, "layout: {}", g.layout);
            }
            let _ = writeln!(
                t,
                "\n{:<22} {:>9} {:>9} {:>9} {:>11} {:>11} {:>11}",
                "stage", "wall s", "user s", "sys s", "virt GB/s", "alloc GB/s", "peak RSS"
            );
            for s in &run.stages {
                match s.status {
                    Status::Ok => {
                        let _ = writeln!(
                            t,
                            "{:<22} {:>9.3} {:>9.3} {:>9.3} {:>11.2} {:>11.2} {:>11}",
                            s.name,
                            s.wall_seconds,
                            s.user_seconds,
                            s.sys_seconds,
                            s.virtual_gbps,
                            s.allocated_gbps,
                            mib(s.max_rss_bytes)
                        );
                    }
                    Status::Skipped | Status::Failed => {
                        let what = if s.status == Status::Skipped {
                            "skipped"
                        } else {
                            "FAILED"
                        };
                        let _ = writeln!(
                            t,
                            "{:<22} {what}: {}",
                            s.name,
                            s.reason.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            if !run.comparisons.is_empty() {
                t.push('\n');
                t.push_str(&comparison_table(&run.comparisons));
            }
        }
        if let Some(growth) = &self.growth {
            t.push_str(
                "\nGrowth with size: wall s [s per allocated GB]. Flat in virtual size and\n\
                 linear in allocated bytes shows as a steady bracketed figure.\n",
            );
            let _ = write!(t, "{:<22}", "stage");
            for r in &self.runs {
                let _ = write!(t, " {:>18}", short_size(r.input.virtual_size_bytes));
            }
            t.push('\n');
            for g in growth {
                let _ = write!(t, "{:<22}", g.stage);
                for (w, a) in g.wall_seconds.iter().zip(&g.seconds_per_allocated_gb) {
                    let cell = match (w, a) {
                        (Some(w), Some(a)) => format!("{w:.3} [{a:.3}]"),
                        (Some(w), None) => format!("{w:.3}"),
                        _ => "-".into(),
                    };
                    let _ = write!(t, " {cell:>18}");
                }
                t.push('\n');
            }
        }
        t
    }
}

/// A Markdown table of comparisons: pair, vhdkit s, peer s, ratio
/// (vhdkit/peer), speedup.
pub fn comparison_table(rows: &[Comparison]) -> String {
    let mut t = String::from(
        "| pair | vhdkit s | peer s | vhdkit/peer | speedup |\n|---|---:|---:|---:|---:|\n",
    );
    for c in rows {
        if let Some(e) = &c.error {
            let _ = writeln!(t, "| {} | – | – | – | error: {e} |", c.pair);
            continue;
        }
        let _ = writeln!(
            t,
            "| {} | {:.3} | {:.3} | {:.3} | {:.2}× |",
            c.pair, c.vhdkit_seconds, c.peer_seconds, c.ratio, c.speedup,
        );
    }
    t
}

/// Time every command on a generated (or given) disk, optionally against
/// qemu-img, md5sum, sha512sum and cp on the same input.
///
/// Each stage runs in a child process of this binary, so its wall time,
/// CPU time and peak resident memory are its own.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// Virtual size of the generated disk (K/M/G/T suffixes).
    #[cfg_attr(feature = "cli", arg(long, default_value = "16G", value_parser = parse_size_arg))]
    pub size: u64,
    /// Share of its blocks holding data, at seeded random places: 30% or 0.3.
    #[cfg_attr(feature = "cli", arg(long, default_value = "30%", value_parser = generate::parse_share))]
    pub allocated: f64,
    /// What the allocated blocks hold: random, text or zeros (written, so allocated).
    #[cfg_attr(feature = "cli", arg(long, default_value = "random", value_parser = DataKind::parse))]
    pub data: DataKind,
    /// Block size of the generated disk and of dynamic outputs.
    #[cfg_attr(feature = "cli", arg(long, default_value = "2M", value_parser = parse_size_arg))]
    pub block_size: u64,
    /// Time this image (raw or any VHD, read only) instead of generating one.
    #[cfg_attr(feature = "cli", arg(long))]
    pub image: Option<PathBuf>,
    /// Where the temporary work folder goes (default: the current directory).
    #[cfg_attr(feature = "cli", arg(long))]
    pub dir: Option<PathBuf>,
    /// Also run the peers installed (qemu-img, md5sum, sha512sum, cp) and print ratios.
    #[cfg_attr(feature = "cli", arg(long))]
    pub compare: bool,
    /// Repeat over these sizes (comma-separated) and show how times grow.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ',', value_parser = parse_size_arg, conflicts_with = "image"))]
    pub sweep: Vec<u64>,
    /// Keep the work folder and generated disks.
    #[cfg_attr(feature = "cli", arg(long))]
    pub keep: bool,
    /// Runs per measurement, median taken (default 1, or 3 with --compare).
    #[cfg_attr(feature = "cli", arg(long))]
    pub reps: Option<usize>,
    /// Seed of the generated disk's block placement and data.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = generate::DEFAULT_SEED))]
    pub seed: u64,
    #[cfg_attr(feature = "cli", command(flatten))]
    pub out: OutputArgs,
}

/// `vhdkit bench`.
pub fn run(args: Args) -> Result<Outcome> {
    let opts = BenchOptions {
        vhdkit: std::env::current_exe()
            .map_err(|e| Error::io(Path::new("/proc/self/exe"), "find the running binary", e))?,
        sizes: if args.sweep.is_empty() {
            vec![args.size]
        } else {
            args.sweep
        },
        allocated: args.allocated,
        data: args.data,
        block_size: block_size_u32(args.block_size)?,
        seed: args.seed,
        image: args.image,
        dir: args.dir,
        compare: args.compare,
        keep: args.keep,
        reps: args.reps.unwrap_or(if args.compare { 3 } else { 1 }),
    };
    let steps = TerminalSteps::new(args.out.quiet);
    let report = bench(&opts, &steps);
    drop(steps);
    let report = report?;
    Outcome::problems_unless(report.all_ran(), &report, BenchReport::to_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_typed() {
        assert_eq!(short_size(64 << 20), "64M");
        assert_eq!(short_size(1 << 30), "1G");
        assert_eq!(short_size(1536 << 20), "1536M");
        assert_eq!(short_size(4 << 40), "4T");
        assert_eq!(short_size(1000), "1000");
        assert_eq!(short_size(0), "0");
    }

    #[test]
    fn rates_and_medians() {
        assert_eq!(gbps(2_000_000_000, 2.0), 1.0);
        assert_eq!(gbps(5, 0.0), 0.0);
        assert_eq!(peers::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(peers::median(&[]), 0.0);
    }
}
