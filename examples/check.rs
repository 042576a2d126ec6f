//! Checks a VHD (and its parents) and prints every finding; exits 1 when
//! one is an error.
//!
//! `cargo run --example check -- IMAGE`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(image) = std::env::args_os().nth(1) else {
        eprintln!("usage: check IMAGE");
        return ExitCode::from(2);
    };
    let report = match vhdkit::check(&image) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("check: {e}");
            return ExitCode::from(2);
        }
    };
    for f in &report.findings {
        let severity = match f.severity {
            vhdkit::Severity::Error => "error",
            _ => "warning",
        };
        println!("{severity:<8}{:<24}{:#x}  {}", f.code, f.offset, f.message);
    }
    println!("{} error(s)", report.error_count());
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
