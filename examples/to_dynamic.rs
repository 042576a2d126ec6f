//! Converts any image (raw, fixed, dynamic, or a differencing chain) to a
//! dynamic VHD, printing the MD5 of the file written.
//!
//! `cargo run --example to_dynamic -- INPUT OUTPUT`

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: to_dynamic INPUT OUTPUT");
        return ExitCode::from(2);
    };
    let mut options = vhdkit::ConvertOptions::default();
    options.to = vhdkit::Target::Dynamic;
    options.digests = vec![vhdkit::DigestAlgo::Md5];
    let written = vhdkit::open(input).and_then(|disk| vhdkit::convert(&disk, output, &options));
    match written {
        Ok(w) => {
            println!(
                "{}: {} bytes, {} data blocks, md5 {}",
                w.output.display(),
                w.file_size,
                w.data_blocks,
                w.digests.md5.unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("to_dynamic: {e}");
            ExitCode::from(if e.kind() == vhdkit::ErrorKind::Check {
                1
            } else {
                2
            })
        }
    }
}
