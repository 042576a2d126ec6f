//! `repair` of a differencing disk whose parent lives in another folder:
//! found only where the user allows (`--parent`, `--parent-dir`), and the
//! repaired copy is checked before it reaches OUT.

mod common;

use std::fs;

use common::*;

#[test]
fn repair_looks_for_the_parent_only_where_allowed() {
    let t = tempfile::tempdir().unwrap();
    let parents = t.path().join("parents");
    let work = t.path().join("work");
    fs::create_dir_all(&parents).unwrap();
    fs::create_dir_all(&work).unwrap();
    fs::write(parents.join("parent.vhd"), golden_dynamic().build().bytes).unwrap();
    let mut child = golden_child([0x42; 16]).build().bytes;
    // The tail footer damaged in its checksum only; the head copy is valid.
    let end = child.len();
    child[end - 512 + 64] ^= 0x5a;
    let input = work.join("child.vhd");
    fs::write(&input, &child).unwrap();
    let out = work.join("fixed.vhd");
    let os = |s: &str| std::ffi::OsString::from(s);

    // The parent is not in the child's folder: the repair cannot check the
    // chain, so it refuses and writes nothing.
    let r = vhdkit(&[
        os("repair").as_os_str(),
        input.as_os_str(),
        out.as_os_str(),
        os("--json").as_os_str(),
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(!out.exists());

    // With the parent's folder allowed, the footer is restored and the
    // copy is a valid chain link.
    let r = vhdkit(&[
        os("repair").as_os_str(),
        input.as_os_str(),
        out.as_os_str(),
        os("--parent-dir").as_os_str(),
        parents.as_os_str(),
        os("--json").as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("FOOTER_CHECKSUM"), "{}", r.stdout);
    let fixed = fs::read(&out).unwrap();
    assert_eq!(fixed[end - 512 + 64], child[end - 512 + 64] ^ 0x5a);
    // An explicit parent works the same, and the input never changed.
    fs::remove_file(&out).unwrap();
    let r = vhdkit(&[
        os("repair").as_os_str(),
        input.as_os_str(),
        out.as_os_str(),
        os("--parent").as_os_str(),
        parents.join("parent.vhd").as_os_str(),
    ]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fs::read(&input).unwrap(), child);
    let leftovers: Vec<_> = fs::read_dir(&work)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
