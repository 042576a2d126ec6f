//! README and `--help` agree: every flag a subcommand's `--help` shows is
//! named in README's section for that command, and every flag README's
//! section names exists in that `--help`.

use std::collections::BTreeSet;
use std::process::Command;

const COMMANDS: [&str; 11] = [
    "info",
    "check",
    "repair",
    "convert",
    "compact",
    "checksum",
    "expand",
    "preflight",
    "bench",
    "catalog",
    "sparsify",
];

/// `catalog`'s flags are its subcommands': their helps are read together.
const CATALOG_SUBCOMMANDS: [&str; 10] = [
    "add",
    "list",
    "find",
    "show",
    "set",
    "verify",
    "deactivate",
    "reactivate",
    "delete",
    "export",
];

/// `--long` flags in `text` (not `--` alone).
fn long_flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i + 2 < b.len() {
        let starts = b[i] == b'-'
            && b[i + 1] == b'-'
            && b[i + 2].is_ascii_lowercase()
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-'));
        if starts {
            let end = (i + 2..b.len())
                .find(|&j| !(b[j].is_ascii_lowercase() || b[j].is_ascii_digit() || b[j] == b'-'))
                .unwrap_or(b.len());
            out.insert(text[i..end].trim_end_matches('-').to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

fn help(command: &str) -> String {
    let mut text = help_of(&[command]);
    if command == "catalog" {
        for sub in CATALOG_SUBCOMMANDS {
            text.push_str(&help_of(&[command, sub]));
        }
    }
    text
}

fn help_of(words: &[&str]) -> String {
    let args: Vec<&str> = words
        .iter()
        .copied()
        .filter(|w| !w.is_empty())
        .chain(["--help"])
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_vhdkit"))
        .args(&args)
        .output()
        .expect("run vhdkit");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// README's section for `command`: from its `### \`vhdkit COMMAND` heading
/// to the next heading. Lines that quote another command's invocation
/// (`vhdkit OTHER ...`) or a peer tool's (`cp --sparse`) are left out:
/// their flags are not this command's.
fn readme_section(readme: &str, command: &str) -> String {
    let head = format!("### `vhdkit {command}");
    let start = readme
        .find(&head)
        .unwrap_or_else(|| panic!("README has no section {head}"));
    let rest = &readme[start + head.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    without_quoted_commands(&rest[..end], command)
        .lines()
        .filter(|line| !line.contains("cp --") && !line.contains("cargo bench"))
        .filter(|line| {
            !COMMANDS
                .iter()
                .filter(|c| **c != command)
                .any(|c| line.contains(&format!("vhdkit {c} ")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without the inline code spans (which may run over a line break)
/// that quote a peer tool's command line (`az …`, `azcopy …`) or another
/// vhdkit command's: their flags are not this command's.
fn without_quoted_commands(text: &str, command: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        // The text starts inside the heading's code span.
        let quoted = i % 2 == 0;
        let peer = part.starts_with("az ") || part.starts_with("azcopy ");
        let other = COMMANDS
            .iter()
            .filter(|c| **c != command)
            .any(|c| part.starts_with(&format!("vhdkit {c} ")));
        if quoted && (peer || other) {
            out.push_str("``");
        } else {
            if i > 0 {
                out.push('`');
            }
            out.push_str(part);
        }
    }
    out
}

#[test]
fn every_help_flag_is_in_readme_and_every_readme_flag_exists() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let mut ignore: BTreeSet<String> = ["--help", "--version"].map(String::from).into();
    let mut problems = Vec::new();
    // Global flags (shown by `vhdkit --help`) are documented once, in the
    // sections every command shares, not in each command's section.
    for flag in long_flags(&help("")).difference(&ignore.clone()) {
        if !readme.contains(flag.as_str()) {
            problems.push(format!("global {flag} is in --help but not in README"));
        }
        ignore.insert(flag.clone());
    }
    for command in COMMANDS {
        let shown: BTreeSet<String> = long_flags(&help(command))
            .difference(&ignore)
            .cloned()
            .collect();
        let named = long_flags(&readme_section(&readme, command));
        for flag in shown.difference(&named) {
            problems.push(format!("{command}: {flag} is in --help but not in README"));
        }
        for flag in named.difference(&shown) {
            if !ignore.contains(flag) {
                problems.push(format!(
                    "{command}: README names {flag}, which --help does not show"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
