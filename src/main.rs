//! The `vhdkit` binary: parses the arguments, dispatches to one command's
//! `run`, prints its outcome (text, or JSON with `--json`) and exits with
//! the status [`exit_status`] gives. Everything else is library code.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vhdkit::commands::{
    bench, catalog, check, checksum, compact, convert, expand, info, preflight, repair, sparsify,
};
use vhdkit::error::{EXIT_FAILED, EXIT_OK};
use vhdkit::report::{error_json, Outcome};

/// Read, check, convert and preflight VHD disk images.
#[derive(Parser)]
#[command(name = "vhdkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How to take an input without a VHD footer: `auto` refuses other image
    /// formats (qcow2, VMDK, VHDX, VDI, QED, Parallels, LUKS, ISO 9660);
    /// `raw` reads it as a raw disk whatever its first bytes look like.
    #[arg(long, global = true, value_enum, default_value_t = InputFormatArg::Auto)]
    input_format: InputFormatArg,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum InputFormatArg {
    Auto,
    Raw,
}

#[derive(Subcommand)]
enum Command {
    Info(info::Args),
    Check(check::Args),
    Repair(repair::Args),
    Convert(convert::Args),
    Compact(compact::Args),
    Expand(expand::Args),
    Checksum(checksum::Args),
    Bench(bench::Args),
    Preflight(preflight::Args),
    Catalog(catalog::Args),
    Sparsify(sparsify::Args),
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Command::Info(a) => a.out.json,
            Command::Check(a) => a.out.json,
            Command::Repair(a) => a.output.json,
            Command::Convert(a) => a.write.out.json,
            Command::Compact(a) => a.write.out.json,
            Command::Expand(a) => a.out.json,
            Command::Checksum(a) => a.out.json,
            Command::Bench(a) => a.out.json,
            Command::Preflight(a) => a.out.json,
            Command::Catalog(a) => a.json,
            Command::Sparsify(a) => a.write.out.json,
        }
    }
}

/// Runs the command (each refuses an input in another image format by
/// itself); also says whether its output is JSON.
fn run(command: Command) -> (bool, vhdkit::Result<Outcome>) {
    let json = command.json();
    let result = match command {
        Command::Info(a) => info::run(a),
        Command::Check(a) => check::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Compact(a) => compact::run(a),
        Command::Expand(a) => expand::run(a),
        Command::Checksum(a) => checksum::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Preflight(a) => preflight::run(a),
        Command::Catalog(a) => catalog::run(a),
        Command::Sparsify(a) => sparsify::run(a),
    };
    // An input that changed while it was read voids whatever was computed.
    let result = result.and_then(|o| vhdkit::disk::source::take_changed().map(|()| o));
    (json, result)
}

/// The one place an outcome or an error becomes an exit status: the
/// outcome's own status, or the error kind's (1 refused or damaged input,
/// 2 could not run, 130 interrupted).
fn exit_status(result: &vhdkit::Result<Outcome>) -> u8 {
    match result {
        Ok(outcome) => outcome.status,
        Err(e) => e.exit_status(),
    }
}

/// Prints the outcome or the error; false if stdout is gone.
fn print(json: bool, result: &vhdkit::Result<Outcome>) -> bool {
    let mut stdout = std::io::stdout().lock();
    let written = match (result, json) {
        (Ok(o), true) => writeln!(stdout, "{:#}", o.json),
        (Ok(o), false) => write!(stdout, "{}", o.text),
        (Err(e), true) => writeln!(stdout, "{:#}", error_json(e)),
        (Err(_), false) => Ok(()),
    };
    if let Err(e) = result {
        eprintln!("vhdkit: {e}");
    }
    written.and_then(|()| stdout.flush()).is_ok()
}

/// A usage error from the argument parser, as JSON when `--json` was given.
fn usage_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(EXIT_OK);
    }
    if std::env::args_os().any(|a| a == "--json") {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or_default();
        let err = vhdkit::Error::Usage(first.trim_start_matches("error: ").to_string());
        println!("{:#}", error_json(&err));
    }
    let _ = e.print();
    ExitCode::from(EXIT_FAILED)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    // Ctrl-C stops a write cleanly: the temporary output is removed.
    let _ = vhdkit::pipeline::stop_on_interrupt();
    vhdkit::disk::set_input_format(match cli.input_format {
        InputFormatArg::Auto => vhdkit::disk::InputFormat::Auto,
        InputFormatArg::Raw => vhdkit::disk::InputFormat::Raw,
    });
    let (json, result) = run(cli.command);
    if !print(json, &result) {
        // A closed stdout (`| head`) ends the program quietly.
        return ExitCode::from(EXIT_OK);
    }
    ExitCode::from(exit_status(&result))
}
