//! The `vhdkit` binary: parses arguments, calls the library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vhdkit::pipeline::digest::Algo;
use vhdkit::pipeline::Progress;

/// Read, check, convert and preflight VHD disk images.
#[derive(Parser)]
#[command(name = "vhdkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what an image is: kind, the three sizes and who reads which,
    /// creator, blocks, parent chain.
    Info {
        /// The image (raw, fixed, dynamic or differencing VHD).
        image: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify every structure and checksum of a VHD (and its parents).
    ///
    /// Exit status: 0 no errors (warnings allowed), 1 errors found, 2 not a
    /// VHD at all or bad usage.
    Check {
        /// The VHD to check.
        image: PathBuf,
        /// Print `{"ok": bool, "findings": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Write a repaired copy when the damage is recoverable without
    /// guessing (a footer restored from its valid copy). IMAGE is never
    /// modified.
    Repair {
        /// The damaged VHD (read only).
        image: PathBuf,
        /// Where to write the repaired copy.
        out: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert a raw disk or any VHD (a chain is flattened) to a fixed or
    /// dynamic VHD or a sparse raw file, at the exact size.
    ///
    /// The output's original size = current size = the input's virtual size
    /// (rounded up to --align), with the specification's geometry and a
    /// creator every consumer reads by current size.
    Convert {
        /// Input: raw, fixed, dynamic or differencing VHD (read only).
        input: PathBuf,
        /// Output path (written to a temporary file beside it, then renamed).
        output: PathBuf,
        /// Output format.
        #[arg(long, value_enum)]
        to: ToArg,
        /// Block size of a dynamic output (K/M suffixes).
        #[arg(long, default_value = "2M", value_parser = parse_size_arg)]
        block_size: u64,
        /// Round the virtual size up to a multiple of this (e.g. 1M for Azure).
        #[arg(long, default_value = "512", value_parser = parse_size_arg)]
        align: u64,
        /// Creator application written in the footer: win, tap, qemu, qem2, vpc, vs, d2v, CTXS, vbox, wa.
        #[arg(long, default_value = vhdkit::convert::DEFAULT_CREATOR)]
        creator: String,
        /// Digests of the output file computed while it is written: md5, sha512, crc32 (comma-separated) or all.
        #[arg(long, value_parser = parse_algos)]
        checksum: Option<Algos>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Rewrite a dynamic VHD without its zero blocks and gaps (a
    /// differencing disk stays over the same parent); identity kept.
    Compact {
        /// Input dynamic or differencing VHD (read only).
        input: PathBuf,
        /// Output path.
        output: PathBuf,
        /// Digests of the output, computed while it is written.
        #[arg(long, value_parser = parse_algos)]
        checksum: Option<Algos>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Simulate auto_disk_config: grow the disk, its partition and its
    /// filesystem to a flavor's root disk size, into a new image.
    ///
    /// Exit status: 0 grown (or --disk-only), 1 refused (Nova's reason
    /// printed, nothing written), 2 could not run.
    Expand {
        /// Input: raw or any VHD (read only).
        input: PathBuf,
        /// Output image (not needed with --dry-run).
        output: Option<PathBuf>,
        /// The flavor's root disk size (K/M/G/T suffixes; root_gb N is NG).
        #[arg(long, value_parser = parse_size_arg)]
        size: u64,
        /// How partition 1 grows.
        #[arg(long, value_enum, default_value = "nova")]
        rule: RuleArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "dynamic")]
        to: ToArg,
        /// Print the plan and the verdict; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Grow only the disk when the partition or filesystem cannot be grown.
        #[arg(long)]
        disk_only: bool,
        /// Write a differencing VHD over INPUT holding only the changed sectors.
        #[arg(long)]
        as_child: bool,
        /// Block size of a dynamic or differencing output.
        #[arg(long, default_value = "2M", value_parser = parse_size_arg)]
        block_size: u64,
        /// Creator application of the output.
        #[arg(long, default_value = vhdkit::convert::DEFAULT_CREATOR)]
        creator: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// MD5, SHA-512 and CRC32 of a file's bytes, as Glance computes them on upload.
    Checksum {
        /// The file, exactly as it would be uploaded.
        file: PathBuf,
        /// Which digests (comma-separated): md5, sha512, crc32, all.
        #[arg(long, default_value = "md5,sha512", value_parser = parse_algos)]
        algo: Algos,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Time every command on a generated (or given) disk, optionally
    /// against qemu-img, md5sum, sha512sum and cp on the same input.
    ///
    /// Each stage runs in a child process of this binary, so its wall time,
    /// CPU time and peak resident memory are its own.
    Bench {
        /// Virtual size of the generated disk (K/M/G/T suffixes).
        #[arg(long, default_value = "16G", value_parser = parse_size_arg)]
        size: u64,
        /// Share of its blocks holding data, at seeded random places: 30% or 0.3.
        #[arg(long, default_value = "30%", value_parser = vhdkit::bench::generate::parse_share)]
        allocated: f64,
        /// What the allocated blocks hold: random, text or zeros (written, so allocated).
        #[arg(long, default_value = "random", value_parser = vhdkit::bench::DataKind::parse)]
        data: vhdkit::bench::DataKind,
        /// Block size of the generated disk and of dynamic outputs.
        #[arg(long, default_value = "2M", value_parser = parse_size_arg)]
        block_size: u64,
        /// Time this image (raw or any VHD, read only) instead of generating one.
        #[arg(long)]
        image: Option<PathBuf>,
        /// Where the temporary work folder goes (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Also run the peers installed (qemu-img, md5sum, sha512sum, cp) and print ratios.
        #[arg(long)]
        compare: bool,
        /// Repeat over these sizes (comma-separated) and show how times grow.
        #[arg(long, value_delimiter = ',', value_parser = parse_size_arg, conflicts_with = "image")]
        sweep: Vec<u64>,
        /// Keep the work folder and generated disks.
        #[arg(long)]
        keep: bool,
        /// Runs per measurement, median taken (default 1, or 3 with --compare).
        #[arg(long)]
        reps: Option<usize>,
        /// Seed of the generated disk's block placement and data.
        #[arg(long, default_value_t = vhdkit::bench::generate::DEFAULT_SEED)]
        seed: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Is IMAGE, the file exactly as it would be uploaded, ready for Glance
    /// and Nova on a target? One read gives the digests Glance records.
    ///
    /// Reports, in order: structure (`check`, link by link), the Glance v2
    /// image record (JSON and `openstack image create` command), the
    /// property lint, the target rules with fixes, the Nova checks of each
    /// flavor, and a verdict. Exit status: 0 ready, 1 not ready (any FAIL),
    /// 2 could not run.
    Preflight {
        /// The image file; for --target xenserver also a folder or tarball
        /// holding a chain 0.vhd (leaf) … n.vhd (base).
        image: PathBuf,
        /// Where it goes: glance, rackspace, xenserver or azure.
        #[arg(long, default_value = "glance", value_parser = vhdkit::preflight::targets::Target::parse)]
        target: vhdkit::preflight::targets::Target,
        /// A flavor to boot on, NAME:RAM_MB:ROOT_GB (repeatable).
        #[arg(long = "flavor", value_name = "NAME:RAM_MB:ROOT_GB", value_parser = vhdkit::preflight::flavor::Flavor::parse)]
        flavors: Vec<vhdkit::preflight::flavor::Flavor>,
        /// The hosts' hypervisor version, checked against hypervisor_version_requires.
        #[arg(long, value_name = "X.Y.Z")]
        hypervisor_version: Option<String>,
        /// The image name (default: the file name without its extension).
        #[arg(long)]
        name: Option<String>,
        /// min_ram in MiB.
        #[arg(long, value_name = "MB", allow_hyphen_values = true)]
        min_ram: Option<String>,
        /// min_disk in GiB (raised to the virtual size if below it).
        #[arg(long, value_name = "GB", allow_hyphen_values = true)]
        min_disk: Option<String>,
        /// An image property KEY=VALUE (repeatable).
        #[arg(long = "property", value_name = "KEY=VALUE", value_parser = vhdkit::preflight::lint::parse_property)]
        properties: Vec<(String, String)>,
        /// Simulate a boot request asking for automatic disk config.
        #[arg(long)]
        request_auto_disk_config: bool,
        /// Swift segment size for --target rackspace (K/M/G suffixes).
        #[arg(long, default_value = "5G", value_parser = parse_size_arg)]
        segment_size: u64,
        /// Swift container for the image object (segments go to CONTAINER_segments).
        #[arg(long, default_value = "images")]
        container: String,
        /// --target xenserver: write the chain as a gzipped tarball here.
        #[arg(long, value_name = "OUT.tgz")]
        package: Option<PathBuf>,
        /// Print the whole report as JSON.
        #[arg(long)]
        json: bool,
        /// No progress bar; only WARN and FAIL lines and the verdict.
        #[arg(long, short)]
        quiet: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RuleArg {
    /// Nova's XenAPI driver: same start, end at the last sector (GPT: last usable LBA).
    Nova,
    /// cloud-utils growpart: end at most 34 sectors before the end, length in whole MiB.
    Growpart,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ToArg {
    Fixed,
    Dynamic,
    Raw,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    vhdkit::convert::parse_size(s)
}

/// A comma-separated list of digests.
#[derive(Clone)]
struct Algos(Vec<Algo>);

fn parse_algos(s: &str) -> Result<Algos, String> {
    Algo::parse_list(s).map(Algos)
}

/// A progress bar on stderr when it is a terminal.
struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new(total: u64, quiet: bool) -> Bar {
        use std::io::IsTerminal;
        if quiet || !std::io::stderr().is_terminal() {
            return Bar(indicatif::ProgressBar::hidden());
        }
        let pb = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            pb.set_style(style);
        }
        Bar(pb)
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn input_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn print_digests(d: &vhdkit::pipeline::digest::Digests, name: &str) {
    if let Some(v) = &d.md5 {
        println!("md5     {v}  {name}");
    }
    if let Some(v) = &d.sha512 {
        println!("sha512  {v}  {name}");
    }
    if let Some(v) = &d.crc32 {
        println!("crc32   {v}  {name}");
    }
    println!("size    {}  {name}", d.size);
}

fn print_report(r: &vhdkit::convert::Report, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(r);
    }
    println!(
        "{} ({}) -> {} ({}): {} bytes virtual, {} bytes file, {} data blocks, {} zero blocks of {} bytes",
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
    if r.digests.md5.is_some() || r.digests.sha512.is_some() || r.digests.crc32.is_some() {
        print_digests(&r.digests, &r.output.display().to_string());
    }
    Ok(())
}

/// Exit status for "problems found".
const EXIT_PROBLEMS: u8 = 1;
/// Exit status for "could not run".
const EXIT_FAILED: u8 = 2;

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Info { image, json } => {
            let info = vhdkit::info::info(&image)?;
            if json {
                print_json(&info)?;
            } else {
                print!("{}", info.to_text());
            }
            Ok(0)
        }
        Command::Check { image, json } => {
            let report = vhdkit::check::check_path(&image, &Default::default())?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.ok { 0 } else { EXIT_PROBLEMS })
        }
        Command::Repair { image, out, json } => match vhdkit::repair::repair(&image, &out) {
            Ok(r) => {
                if json {
                    print_json(&r)?;
                } else {
                    println!("{}: {}", out.display(), r.action);
                }
                Ok(0)
            }
            Err(e @ vhdkit::Error::Check { .. }) => {
                eprintln!("vhdkit: {e}");
                Ok(EXIT_PROBLEMS)
            }
            Err(e) => Err(e.into()),
        },
        Command::Convert {
            input,
            output,
            to,
            block_size,
            align,
            creator,
            checksum,
            json,
            quiet,
        } => {
            let opts = vhdkit::convert::ConvertOptions {
                to: match to {
                    ToArg::Fixed => vhdkit::convert::Target::Fixed,
                    ToArg::Dynamic => vhdkit::convert::Target::Dynamic,
                    ToArg::Raw => vhdkit::convert::Target::Raw,
                },
                block_size: u32::try_from(block_size)
                    .map_err(|_| anyhow::anyhow!("--block-size {block_size}: too large"))?,
                align,
                creator,
                digests: checksum.map(|a| a.0).unwrap_or_default(),
            };
            let bar = Bar::new(input_size(&input), quiet);
            let r = vhdkit::convert::convert(&input, &output, &opts, &bar);
            drop(bar);
            exit_for(r.map(|r| print_report(&r, json)))
        }
        Command::Compact {
            input,
            output,
            checksum,
            json,
            quiet,
        } => {
            let bar = Bar::new(input_size(&input), quiet);
            let r = vhdkit::convert::compact(
                &input,
                &output,
                &checksum.map(|a| a.0).unwrap_or_default(),
                &bar,
            );
            drop(bar);
            exit_for(r.map(|r| print_report(&r, json)))
        }
        Command::Expand {
            input,
            output,
            size,
            rule,
            to,
            dry_run,
            disk_only,
            as_child,
            block_size,
            creator,
            json,
            quiet,
        } => {
            let opts = vhdkit::expand::ExpandOptions {
                size,
                rule: match rule {
                    RuleArg::Nova => vhdkit::partition::GrowRule::Nova,
                    RuleArg::Growpart => vhdkit::partition::GrowRule::Growpart,
                },
                to: match to {
                    ToArg::Fixed => vhdkit::convert::Target::Fixed,
                    ToArg::Dynamic => vhdkit::convert::Target::Dynamic,
                    ToArg::Raw => vhdkit::convert::Target::Raw,
                },
                disk_only,
                as_child,
                block_size: u32::try_from(block_size)
                    .map_err(|_| anyhow::anyhow!("--block-size {block_size}: too large"))?,
                creator,
            };
            let result = if dry_run {
                vhdkit::expand::plan_expand(&input, &opts)
            } else {
                let Some(output) = output else {
                    anyhow::bail!("expand: OUTPUT is required unless --dry-run");
                };
                let bar = Bar::new(size, quiet);
                let r = vhdkit::expand::expand(&input, &output, &opts, &bar);
                drop(bar);
                r
            };
            match result {
                Ok(report) => {
                    if json {
                        print_json(&report)?;
                    } else {
                        print!("{}", report.to_text());
                    }
                    let refused = !report.verdict.grown && !report.verdict.disk_only;
                    Ok(if refused { EXIT_PROBLEMS } else { 0 })
                }
                Err(e @ (vhdkit::Error::Refused { .. } | vhdkit::Error::Check { .. })) => {
                    eprintln!("vhdkit: {e}");
                    Ok(EXIT_PROBLEMS)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Checksum {
            file,
            algo,
            json,
            quiet,
        } => {
            let bar = Bar::new(input_size(&file), quiet);
            let d = vhdkit::convert::checksum(&file, &algo.0, &bar)?;
            drop(bar);
            if json {
                print_json(&d)?;
            } else {
                print_digests(&d, &file.display().to_string());
            }
            Ok(0)
        }
        Command::Bench {
            size,
            allocated,
            data,
            block_size,
            image,
            dir,
            compare,
            sweep,
            keep,
            reps,
            seed,
            json,
            quiet,
        } => {
            let opts = vhdkit::bench::BenchOptions {
                vhdkit: std::env::current_exe()?,
                sizes: if sweep.is_empty() { vec![size] } else { sweep },
                allocated,
                data,
                block_size: u32::try_from(block_size)
                    .map_err(|_| anyhow::anyhow!("--block-size {block_size}: too large"))?,
                seed,
                image,
                dir,
                compare,
                keep,
                reps: reps.unwrap_or(if compare { 3 } else { 1 }),
            };
            let steps = vhdkit::bench::TerminalSteps::new(quiet);
            let report = vhdkit::bench::run(&opts, &steps)?;
            drop(steps);
            if json {
                print_json(&report)?;
            } else {
                print!("{}", report.to_text());
            }
            Ok(if report.all_ran() { 0 } else { EXIT_PROBLEMS })
        }
        Command::Preflight {
            image,
            target,
            flavors,
            hypervisor_version,
            name,
            min_ram,
            min_disk,
            properties,
            request_auto_disk_config,
            segment_size,
            container,
            package,
            json,
            quiet,
        } => {
            let opts = vhdkit::preflight::Options {
                target,
                flavors,
                hypervisor_version,
                name,
                min_ram,
                min_disk,
                properties,
                request_auto_disk_config,
                segment_size,
                container,
                package,
                check: Default::default(),
            };
            let total = vhdkit::preflight::targets::progress_total(&image);
            let bar = Bar::new(total, quiet);
            let report = vhdkit::preflight::preflight(&image, &opts, &bar);
            drop(bar);
            let report = report?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", report.to_text(quiet));
            }
            Ok(if report.verdict.ready {
                0
            } else {
                EXIT_PROBLEMS
            })
        }
    }
}

/// Maps a command's outcome to an exit status: a damaged input (check
/// errors) is "problems found" (1), anything else that failed is 2.
fn exit_for(r: vhdkit::Result<anyhow::Result<()>>) -> anyhow::Result<u8> {
    match r {
        Ok(printed) => printed.map(|_| 0),
        Err(e @ vhdkit::Error::Check { .. }) => {
            eprintln!("vhdkit: {e}");
            Ok(EXIT_PROBLEMS)
        }
        Err(e) => Err(e.into()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_FAILED } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Ctrl-C stops a write cleanly: the temporary output is removed.
    let _ = vhdkit::pipeline::stop_on_interrupt();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("vhdkit: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
