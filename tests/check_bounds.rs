//! `check` stays bounded whatever the image says: a 16 MiB dynamic VHD whose
//! header claims 3M table entries (the BAT inside the file, checksums valid,
//! every extra entry pointing at sector 0) gives findings folded per code,
//! a small output and a small peak RSS, measured on the real binary.

mod common;

use common::*;

const ENTRIES: u32 = 3_000_000;
const MIB: u64 = 1 << 20;

#[test]
fn three_million_bat_entries_give_bounded_output_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = Spec::dynamic(16 * MIB, 2 << 20)
        .max_table_entries(ENTRIES)
        .block(0, &pattern(3, 4096))
        .build();
    // Entries beyond the disk's 8 blocks: 0 (a block at sector 0), as in an
    // image whose header was patched over a zero-filled table.
    let first_extra = img.bat_entry(8);
    let bat_end = img.bat_entry(ENTRIES - 1) + 4;
    assert!(
        bat_end < img.bytes.len() as u64,
        "the BAT lies inside the file"
    );
    img.put(first_extra, &vec![0u8; (bat_end - first_extra) as usize]);
    let path = img.write(dir.path(), "huge-bat.vhd");
    assert!(img.bytes.len() as u64 >= 12 * MIB);

    for json in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vhdkit"));
        cmd.arg("check").arg(&path);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "json {json}");
        assert!(
            out.stdout.len() < 256 << 10,
            "json {json}: {} bytes of output",
            out.stdout.len()
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("folded"), "{text}");
        if json {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let findings = v["findings"].as_array().unwrap();
            let folded: Vec<_> = findings.iter().filter(|f| !f["folded"].is_null()).collect();
            assert!(!folded.is_empty());
            let total: u64 = folded
                .iter()
                .map(|f| f["folded"]["count"].as_u64().unwrap())
                .sum();
            assert!(total > 2_000_000, "{total} findings folded");
            for f in &folded {
                assert!(
                    f["folded"]["first_offset"].as_u64() <= f["folded"]["last_offset"].as_u64()
                );
            }
        }
    }
    // Peak resident memory of the children run above (this test binary
    // runs no other child).
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    #[allow(unsafe_code)]
    let max_rss_kib = unsafe { usage.assume_init() }.ru_maxrss;
    eprintln!("peak RSS of check: {max_rss_kib} KiB");
    assert!(max_rss_kib < 64 * 1024, "peak RSS {max_rss_kib} KiB");
}
