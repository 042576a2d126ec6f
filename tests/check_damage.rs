//! `check`, `info` and `repair` on damaged images, through the real binary:
//! one golden image, one mutation per case, the exact finding code, its
//! offset, a message naming the field and both values, the exit status, and
//! never a panic.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::*;

#[test]
fn golden_images_check_clean() {
    let dir = tempfile::tempdir().unwrap();
    let parent = golden_dynamic().unique_id([0x50; 16]).build();
    parent.write(dir.path(), "parent.vhd");
    let images = [
        ("dynamic.vhd", golden_dynamic().build()),
        ("batmap.vhd", golden_dynamic().with_batmap().build()),
        ("fixed.vhd", golden_fixed().build()),
        ("child.vhd", golden_child([0x50; 16]).build()),
    ];
    for (name, img) in images {
        let path = img.write(dir.path(), name);
        let (run, json) = check_json(&path);
        assert_eq!(run.code, 0, "{name}: {}", run.stdout);
        assert_eq!(json["ok"], true, "{name}");
        // Only the warnings any such image gets: 64 KiB blocks (Hyper-V
        // reads 512 KiB and 2 MiB only) and the child's absolute W2ku
        // locator (outside its folder, as Windows writes it).
        let findings = json["findings"].as_array().unwrap();
        let unexpected: Vec<_> = findings
            .iter()
            .filter(|f| f["code"] != "BLOCK_SIZE_HYPERV" && f["code"] != "PARENT_OUTSIDE")
            .collect();
        assert!(unexpected.is_empty(), "{name}: {findings:?}");
    }
}

#[test]
fn every_damage_gets_its_code() {
    let mut failures = Vec::new();
    for case in damage_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = case.write(dir.path());
        if let Err(e) = check_case(&case, &path) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn check_case(case: &Case, path: &Path) -> Result<(), String> {
    let (run, json) = check_json(path);
    if run.code != case.exit {
        return Err(format!(
            "exit {} (expected {}); stdout {} stderr {}",
            run.code, case.exit, run.stdout, run.stderr
        ));
    }
    if case.exit == 2 {
        if !run.stderr.contains("not a VHD") {
            return Err(format!("stderr does not say `not a VHD`: {}", run.stderr));
        }
        return Ok(());
    }
    if json["ok"] != false {
        return Err(format!("ok is not false: {json}"));
    }
    let mut expected: Vec<String> = case.errors.iter().map(|s| s.to_string()).collect();
    expected.sort();
    let got = error_codes(&json);
    if got != expected {
        return Err(format!(
            "error codes {got:?}, expected {expected:?}: {}",
            run.stdout
        ));
    }
    let Some(code) = case.code else {
        return Ok(());
    };
    let findings = json["findings"].as_array().unwrap();
    let finding = findings
        .iter()
        .find(|f| f["code"] == code)
        .ok_or_else(|| format!("no {code} finding"))?;
    for key in ["severity", "file", "offset", "message"] {
        if finding.get(key).is_none() {
            return Err(format!("finding has no {key}: {finding}"));
        }
    }
    let offset = finding["offset"].as_u64().unwrap_or(u64::MAX);
    if Some(offset) != case.offset {
        return Err(format!(
            "{code} at offset {offset:#x}, expected {:#x}: {finding}",
            case.offset.unwrap_or(0)
        ));
    }
    let message = finding["message"].as_str().unwrap_or_default();
    let dir = path.parent().unwrap().display().to_string();
    for part in &case.message {
        let part = part.replace("{dir}", &dir);
        if !message.contains(part.as_str()) {
            return Err(format!("{code} message lacks {part:?}: {message}"));
        }
    }
    Ok(())
}

#[test]
fn info_never_panics_on_damage() {
    for case in damage_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = case.write(dir.path());
        for json in [false, true] {
            let mut args: Vec<&OsStr> = vec!["info".as_ref()];
            if json {
                args.push("--json".as_ref());
            }
            args.push(path.as_os_str());
            let run = vhdkit(&args);
            assert!(
                run.code == 0 || run.code == 2,
                "{}: info exit {}: {}",
                case.name,
                run.code,
                run.stderr
            );
            if json && run.code == 0 {
                let v: serde_json::Value = serde_json::from_str(&run.stdout)
                    .unwrap_or_else(|e| panic!("{}: info --json: {e}", case.name));
                assert!(v["virtual_size"].is_u64(), "{}", case.name);
            }
        }
    }
}

#[test]
fn text_check_lists_findings_and_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = golden_dynamic().build();
    img.set_header(|h| h.header_version = 0x0003_0000);
    let path = img.write(dir.path(), "bad.vhd");
    let run = vhdkit(&["check".as_ref(), path.as_os_str()]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("HEADER_VERSION"), "{}", run.stdout);
    assert!(run.stdout.contains("FAILED"), "{}", run.stdout);
}

#[test]
fn bad_usage_exits_2() {
    let run = vhdkit(&["check".as_ref()]);
    assert_eq!(run.code, 2);
    let run = vhdkit(&["check".as_ref(), "/nonexistent/x.vhd".as_ref()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("/nonexistent/x.vhd"), "{}", run.stderr);
}

#[test]
fn short_footer_of_old_files_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Spec::fixed(1 << 20).build().bytes;
    bytes.pop();
    let path = dir.path().join("old.vhd");
    std::fs::write(&path, bytes).unwrap();
    let (run, json) = check_json(&path);
    assert!(error_codes(&json).is_empty(), "{}", run.stdout);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("FOOTER_511"), "{}", run.stdout);
}

// ---------------------------------------------------------------- repair

fn repair(input: &Path, out: &Path) -> Run {
    vhdkit(&["repair".as_ref(), input.as_os_str(), out.as_os_str()])
}

/// Repairs `bytes` and returns the output, checking that the input is
/// unchanged and the output checks clean.
fn repaired(bytes: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.vhd");
    let out = dir.path().join("out.vhd");
    std::fs::write(&input, bytes).unwrap();
    let run = repair(&input, &out);
    assert_eq!(run.code, 0, "repair: {} {}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(&input).unwrap(), bytes, "input changed");
    let (run, json) = check_json(&out);
    assert_eq!(run.code, 0, "repaired copy: {}", run.stdout);
    assert_eq!(json["ok"], true);
    std::fs::read(&out).unwrap()
}

#[test]
fn repair_restores_a_garbage_tail_footer() {
    let golden = golden_dynamic().build();
    let mut img = golden.clone();
    img.put(img.footer_offset, &pattern(77, 512));
    assert_eq!(repaired(&img.bytes), golden.bytes);
}

#[test]
fn repair_appends_a_cut_off_footer() {
    let golden = golden_dynamic().build();
    let cut = &golden.bytes[..golden.bytes.len() - 512];
    assert_eq!(repaired(cut), golden.bytes);
}

#[test]
fn repair_restores_a_damaged_head_copy() {
    let golden = golden_dynamic().build();
    let mut img = golden.clone();
    img.bytes[48] ^= 0x40; // current size in the copy at offset 0, not resealed
    assert_eq!(repaired(&img.bytes), golden.bytes);
}

#[test]
fn repair_restores_a_head_copy_with_a_bad_cookie() {
    let golden = golden_dynamic().build();
    let mut img = golden.clone();
    img.put(0, b"Xonectix");
    assert_eq!(repaired(&img.bytes), golden.bytes);
}

#[test]
fn repair_refuses_what_it_cannot_undo() {
    let mut header = golden_dynamic().build();
    let at = header.header_offset.unwrap() + 36;
    let v = header.get_u32(at);
    header.put_u32(at, v ^ 1);
    let mut version = golden_dynamic().build();
    version.set_header(|h| h.header_version = 2);
    let cases = [
        ("header checksum", header.bytes),
        ("header version", version.bytes),
        (
            "truncated block",
            golden_dynamic().build().bytes[..200_000].to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.vhd");
        let out = dir.path().join("out.vhd");
        std::fs::write(&input, &bytes).unwrap();
        let run = repair(&input, &out);
        assert_eq!(run.code, 1, "{name}: {} {}", run.stdout, run.stderr);
        assert!(!out.exists(), "{name}: output created");
        assert_eq!(
            std::fs::read(&input).unwrap(),
            bytes,
            "{name}: input changed"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{name}: {leftovers:?}");
    }
}

#[test]
fn repair_of_a_clean_image_is_refused_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = golden_dynamic().build().write(dir.path(), "in.vhd");
    let out = dir.path().join("out.vhd");
    let run = repair(&input, &out);
    assert_ne!(run.code, 0);
    assert!(!out.exists());
    assert!(run.stderr.contains("no errors"), "{}", run.stderr);
}

/// Many BAT entries pointing at one block: each overlap is an error, the
/// block's data is scanned once (the check stays linear in the file), and
/// the findings stay few.
#[test]
fn bat_entries_sharing_one_block_are_scanned_once() {
    let dir = tempfile::tempdir().unwrap();
    let bs = GOLDEN_BLOCK as usize;
    let entries = 4096u32;
    let mut img = Spec::dynamic(u64::from(entries) * bs as u64, GOLDEN_BLOCK)
        .block_with_bitmap(0, vec![0; 512], &pattern(1, bs))
        .build();
    let sector = img.get_u32(img.bat_entry(0));
    for i in 1..entries {
        let at = img.bat_entry(i);
        img.put_u32(at, sector);
    }
    let path = img.write(dir.path(), "shared.vhd");
    let (run, json) = check_json(&path);
    assert_eq!(run.code, 1);
    assert_eq!(error_codes(&json), ["BAT_OVERLAP"]);
    let findings: Vec<_> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] != "BLOCK_SIZE_HYPERV")
        .collect();
    assert!(findings.len() <= 10, "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("4087 more pairs")),
        "{findings:?}"
    );
    let hidden = findings
        .iter()
        .find(|f| f["code"] == "BITMAP_HIDDEN_DATA")
        .expect("hidden data warning");
    let sectors = bs / 512;
    assert!(
        hidden["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{sectors} sector(s)")),
        "{hidden}"
    );
}

#[test]
fn repair_restores_a_tail_footer_with_a_bad_checksum() {
    let golden = golden_dynamic().build();
    let mut img = golden.clone();
    let at = img.footer_offset + 64;
    let v = img.get_u32(at);
    img.put_u32(at, v ^ 0x8000);
    assert_eq!(repaired(&img.bytes), golden.bytes);
}

#[test]
fn repair_never_writes_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = golden_dynamic().build();
    img.put(img.footer_offset, &pattern(77, 512));
    let input = img.write(dir.path(), "in.vhd");
    let run = repair(&input, &input);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("input"), "{}", run.stderr);
    assert_eq!(std::fs::read(&input).unwrap(), img.bytes);
}

#[test]
fn repair_of_something_not_a_vhd_exits_2_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut img = golden_fixed().build();
    img.put(img.footer_offset, &pattern(77, 512));
    let input = img.write(dir.path(), "in.vhd");
    let out = dir.path().join("out.vhd");
    let run = repair(&input, &out);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not a VHD"), "{}", run.stderr);
    assert!(!out.exists());
}

#[test]
fn findings_in_a_parent_name_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let mut parent = golden_dynamic().unique_id([0x50; 16]).build();
    parent.set_header(|h| h.header_version = 0x0002_0000);
    let parent_path = parent.write(dir.path(), "parent.vhd");
    let child = golden_child([0x50; 16])
        .build()
        .write(dir.path(), "child.vhd");
    let (run, json) = check_json(&child);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(error_codes(&json), ["HEADER_VERSION"]);
    let f = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["severity"] == "error")
        .unwrap();
    assert_eq!(f["file"], parent_path.display().to_string());
    // The child itself has nothing to repair.
    let out = dir.path().join("out.vhd");
    let run = repair(&child, &out);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!out.exists());
}

/// Quirks of real writers: warnings, never errors (exit 0).
#[test]
fn tolerated_quirks_are_warnings() {
    let hidden = {
        let mut img = golden_dynamic().creator("tap").build();
        let mut f = img.footer();
        f.reserved[0] = 1;
        f.checksum = f.computed_checksum_without_hidden();
        let b = f.to_bytes();
        let at = img.footer_offset;
        img.put(at, &b);
        img.put(0, &b);
        img
    };
    let mut original = golden_dynamic().build();
    original.set_footer(|f| f.original_size = 512 << 10);
    let qemu_chs = golden_dynamic().creator("qemu").build();
    let mut saved = golden_dynamic().build();
    saved.set_footer(|f| f.saved_state = 1);
    let mut future = golden_dynamic().build();
    future.set_footer(|f| f.time_stamp = u32::MAX);
    let mut locator = golden_dynamic().build();
    let (_, b0) = locator.block_offsets[0];
    locator.set_header(|h| {
        h.parent_locators[0].platform_code = 0x5732_7275;
        h.parent_locators[0].platform_data_offset = b0;
    });
    let cases = [
        ("hidden", hidden, "FOOTER_CHECKSUM_HIDDEN"),
        ("original", original, "SIZE_DISAGREE"),
        ("qemu_chs", qemu_chs, "SIZE_DISAGREE"),
        ("saved", saved, "FOOTER_SAVED_STATE"),
        ("future", future, "FOOTER_TIMESTAMP"),
        ("locator", locator, "LOCATOR_ON_DYNAMIC"),
    ];
    for (name, img, code) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = img.write(dir.path(), "q.vhd");
        let (run, json) = check_json(&path);
        assert_eq!(run.code, 0, "{name}: {}", run.stdout);
        assert_eq!(json["ok"], true, "{name}");
        let f = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("{name}: no {code}: {json}"));
        assert_eq!(f["severity"], "warning", "{name}");
    }
}

/// Opening a damaged image for reading fails with an error that names the
/// file, or succeeds and reads without panicking (errors naming the file).
#[test]
fn opening_damaged_images_names_the_file() {
    for case in damage_cases() {
        let dir = tempfile::tempdir().unwrap();
        let path = case.write(dir.path());
        let dir_text = dir.path().display().to_string();
        let err = match vhdkit::disk::open(&path) {
            Err(e) => Some(e),
            Ok(disk) => {
                let mut buf = vec![0u8; disk.size_bytes().min(1 << 20) as usize];
                disk.read_at(0, &mut buf).err()
            }
        };
        if let Some(e) = err {
            let msg = e.to_string();
            assert!(msg.contains(&dir_text), "{}: {msg}", case.name);
        }
    }
}
