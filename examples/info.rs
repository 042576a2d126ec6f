//! Prints what an image is: kind, sizes, geometry, creator, chain, and how
//! much of it holds data.
//!
//! `cargo run --example info -- IMAGE [PARENT_DIR]...`

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(image) = args.next() else {
        eprintln!("usage: info IMAGE [PARENT_DIR]...");
        return ExitCode::from(2);
    };
    let mut options = vhdkit::OpenOptions::default();
    options.search_dirs = args.map(Into::into).collect();
    match vhdkit::open_with(&image, &options) {
        Ok(disk) => {
            print_info(&disk);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("info: {e} ({})", e.kind());
            ExitCode::from(2)
        }
    }
}

fn print_info(disk: &vhdkit::Disk) {
    println!("path:         {}", disk.path().display());
    println!("kind:         {}", disk.kind());
    println!("virtual size: {} bytes", disk.virtual_size());
    println!("file size:    {} bytes", disk.file_size());
    if let Some(g) = disk.geometry() {
        println!(
            "geometry:     {}/{}/{} (C/H/S)",
            g.cylinders, g.heads, g.sectors_per_track
        );
    }
    if let Some(c) = disk.creator() {
        let (major, minor) = c.version;
        println!(
            "creator:      {} {major}.{minor} on {}",
            c.application.trim(),
            c.host_os
        );
    }
    let data: u64 = disk.blocks().map(|r| r.end - r.start).sum();
    println!(
        "data:         {data} bytes in {} byte blocks",
        disk.block_size()
    );
    for (depth, link) in disk.chain().iter().enumerate().skip(1) {
        println!(
            "parent {depth}:     {} ({})",
            link.path.display(),
            link.kind
        );
    }
}
