//! Nothing lost, nothing crashes: outputs that are not regular files,
//! inputs that change or stream, stale temporaries, closed stdout, file
//! names that are not UTF-8, and repair's refusal to guess. Each case uses a
//! real file, FIFO, signal or truncate.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vhdkit")
}

fn md5(path: &Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Temporary outputs left in `dir`.
fn temps(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".vhdkit-tmp"))
        .collect()
}

/// A raw file of `len` bytes of data (no zero runs, no holes).
fn data_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, pattern(7, len)).unwrap();
    path
}

/// `vhdkit convert IN OUT --to TO` with `extra` flags.
fn convert(input: &Path, out: &Path, to: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        OsStr::new("convert"),
        input.as_os_str(),
        out.as_os_str(),
        OsStr::new("--to"),
        OsStr::new(to),
    ];
    args.extend(extra.iter().map(OsStr::new));
    vhdkit(&args)
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo");
}

#[test]
fn out_that_is_a_fifo_or_a_device_is_refused_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 1 << 20);
    let fifo = t.path().join("out.fifo");
    mkfifo(&fifo);
    let sum = md5(&input);
    for out in [fifo.as_path(), Path::new("/dev/null")] {
        let r = convert(&input, out, "raw", &[]);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("regular files only"), "{}", r.stderr);
    }
    let meta = fs::symlink_metadata(&fifo).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    let null = fs::symlink_metadata("/dev/null").unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &null.file_type()
    ));
    assert!(temps(t.path()).is_empty());
    assert_eq!(md5(&input), sum);
}

#[test]
fn a_symlink_out_replaces_its_target_and_stays_a_link() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 1 << 20);
    fs::create_dir(t.path().join("real")).unwrap();
    let target = t.path().join("real/disk.raw");
    fs::write(&target, b"old").unwrap();
    let link = t.path().join("link.raw");
    std::os::unix::fs::symlink("real/disk.raw", &link).unwrap();
    let r = convert(&input, &link, "raw", &["-q"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(md5(&target), md5(&input));
    assert!(temps(&t.path().join("real")).is_empty());
}

#[test]
fn a_missing_out_folder_is_refused_and_a_long_name_fits() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 1 << 20);
    let missing = t.path().join("newdir/out.vhd");
    let r = convert(&input, &missing, "dynamic", &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(!t.path().join("newdir").exists());
    // A 255-byte name: the temporary name must not overflow it.
    let long = t.path().join(format!("{}.vhd", "a".repeat(251)));
    let r = convert(&input, &long, "dynamic", &["-q"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(long.is_file());
}

/// Starts `args`, truncates `input` to 1 MiB once the run is under way
/// (its temporary file exists, or after a moment when it writes none), and
/// returns the run's exit status and stderr.
fn truncated_during(args: &[&OsStr], input: &Path, dir: &Path, writes: bool) -> (i32, String) {
    let child = Command::new(bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    if writes {
        while temps(dir).is_empty() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(2));
        }
    } else {
        std::thread::sleep(Duration::from_millis(150));
    }
    fs::OpenOptions::new()
        .write(true)
        .open(input)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_input_truncated_during_a_run_fails_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let len = 768usize << 20;
    for (args, writes) in [
        (
            &["convert", "in.raw", "out.raw", "--to", "raw", "--no-sync"][..],
            true,
        ),
        (
            &[
                "convert",
                "in.raw",
                "out.vhd",
                "--to",
                "dynamic",
                "--no-sync",
            ][..],
            true,
        ),
        (&["checksum", "in.raw", "--algo", "all"][..], false),
    ] {
        let input = data_file(t.path(), "in.raw", len);
        let args: Vec<PathBuf> = args
            .iter()
            .map(|a| {
                if a.ends_with(".raw") || a.ends_with(".vhd") {
                    t.path().join(a)
                } else {
                    PathBuf::from(a)
                }
            })
            .collect();
        let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, stderr) = truncated_during(&args, &input, t.path(), writes);
        if code == 0 && !writes {
            eprintln!("note: checksum finished before the truncate; case not exercised");
            continue;
        }
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("changed while it was being read (now 1048576 bytes, was 805306368)"),
            "{stderr}"
        );
        assert!(temps(t.path()).is_empty());
        assert!(!t.path().join("out.raw").exists() && !t.path().join("out.vhd").exists());
    }
}

#[test]
fn stale_temporaries_of_dead_runs_are_removed_live_ones_kept() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 1 << 20);
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let stale = t
        .path()
        .join(format!(".out.vhd.{dead_pid}.AbC123.vhdkit-tmp"));
    let live = t
        .path()
        .join(format!(".out.vhd.{}.XyZ789.vhdkit-tmp", std::process::id()));
    let other = t.path().join(".notes.vhdkit-tmp");
    for p in [&stale, &live, &other] {
        fs::write(p, b"x").unwrap();
    }
    let r = convert(&input, &t.path().join("out.vhd"), "dynamic", &["-q"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!stale.exists(), "a dead run's temporary file stays");
    assert!(live.exists() && other.exists());
}

#[test]
fn a_closed_stdout_ends_quietly_after_the_commit() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 4 << 20);
    let script = format!(
        "'{b}' checksum '{i}' --algo all | head -1 >/dev/null; echo ${{PIPESTATUS[0]}}; \
         '{b}' convert '{i}' '{o}' --to dynamic --checksum all | true; echo ${{PIPESTATUS[0]}}",
        b = bin(),
        i = input.display(),
        o = t.path().join("out.vhd").display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().collect::<Vec<_>>(), ["0", "0"], "{text}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert!(t.path().join("out.vhd").is_file());
}

#[test]
fn names_that_are_not_utf8_work_in_text_and_json() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 1 << 20);
    let name = t.path().join(OsStr::from_bytes(b"n\xffame.vhd"));
    let r = convert(&input, &name, "dynamic", &["--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(json["output"].as_str().unwrap().ends_with("n\\xffame.vhd"));
    let r = vhdkit(&[OsStr::new("info"), name.as_os_str()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("n\u{fffd}ame.vhd"));
}

#[test]
fn checksum_streams_stdin_and_pipes() {
    let t = tempfile::tempdir().unwrap();
    let input = data_file(t.path(), "in.raw", 3 << 20);
    let want = md5(&input);
    let script = format!(
        "cat '{i}' | '{b}' checksum - --algo md5; '{b}' checksum <(cat '{i}') --algo md5",
        b = bin(),
        i = input.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches(&want).count(), 2, "{text}");
    assert_eq!(text.matches("3145728").count(), 2, "{text}");
}

#[test]
fn random_access_commands_refuse_pipes_and_devices_without_blocking() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("in.fifo");
    mkfifo(&fifo);
    for input in [fifo.as_path(), Path::new("/dev/zero")] {
        let start = Instant::now();
        let r = convert(input, &t.path().join("out.vhd"), "dynamic", &[]);
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(r.code, 2, "{r:?}");
        assert!(r.stderr.contains("needs a regular file"), "{}", r.stderr);
        assert!(!t.path().join("out.vhd").exists());
    }
}

#[test]
fn sigterm_ends_a_checksum_waiting_on_a_pipe() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("in.fifo");
    mkfifo(&fifo);
    let mut child = Command::new(bin())
        .arg("checksum")
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A writer that never writes keeps the read waiting.
    let _writer = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(130));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "SIGTERM ignored");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Seals a footer's checksum.
fn seal(footer: &mut [u8]) {
    footer[64..68].fill(0);
    let sum: u32 = footer.iter().map(|&b| u32::from(b)).sum();
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
}

#[test]
fn repair_refuses_a_surviving_copy_that_contradicts_the_bat() {
    let t = tempfile::tempdir().unwrap();
    let mut img = golden_dynamic().build().bytes;
    // The head copy says 128 KiB less, sealed; the tail is damaged only in
    // its checksum.
    let smaller = (GOLDEN_SIZE - (128 << 10)).to_be_bytes();
    img[40..48].copy_from_slice(&smaller);
    img[48..56].copy_from_slice(&smaller);
    seal(&mut img[..512]);
    let end = img.len();
    img[end - 512 + 64] ^= 0x5a;
    let input = t.path().join("in.vhd");
    fs::write(&input, &img).unwrap();
    let sum = md5(&input);
    let out = t.path().join("out.vhd");
    let r = vhdkit(&[OsStr::new("repair"), input.as_os_str(), out.as_os_str()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("cannot be repaired without guessing"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("would be a guess") || r.stderr.contains("does not match the BAT"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());
    assert!(temps(t.path()).is_empty());
    assert_eq!(md5(&input), sum);
}
