//! Prints the partition table of a disk image (raw or any VHD, a chain read
//! through), as `sfdisk --list` would.
//!
//! `cargo run --example partitions -- IMAGE`

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(image) = std::env::args_os().nth(1) else {
        eprintln!("usage: partitions IMAGE");
        return ExitCode::from(2);
    };
    let table = match vhdkit::open(&image).and_then(|disk| disk.partitions()) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("partitions: {e}");
            return ExitCode::from(2);
        }
    };
    println!("table: {:?}", table.kind);
    for p in &table.partitions {
        println!(
            "{:>3}  start {:>12}  end {:>12}  sectors {:>12}  type {}{}",
            p.number,
            p.start_lba,
            p.end_lba,
            p.size_sectors,
            p.type_id,
            if p.bootable { "  boot" } else { "" }
        );
    }
    ExitCode::SUCCESS
}
