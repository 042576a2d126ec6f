//! The `vhdkit` binary: parses arguments, calls the library, prints.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("vhdkit: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
