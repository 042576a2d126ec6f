//! vhdkit against the tools people use today, on the same input in the same
//! run: `qemu-img convert` both ways, `md5sum`, `sha512sum`,
//! `cp --sparse=always`. Peers that are not installed are left out.
//!
//! Fairness rules:
//! - runs alternate (vhdkit, peer, then peer, vhdkit, ...), so drift of a
//!   shared machine hits both, and the median of each side is compared;
//! - `sync` runs (untimed) before every measured run, so writeback left by
//!   the previous run does not land in the next; nothing is dropped from the
//!   page cache;
//! - vhdkit fsyncs its output before renaming it (durability); `qemu-img`
//!   and `cp` do not. Every write comparison therefore has two rows: the peer
//!   as it is, and the peer followed by `sync OUT` (equal durability).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::measure::{self, Measured};
use super::Steps;

/// One command of a comparison: program, arguments, and the output file it
/// makes (removed before each run).
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub output: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: &Path, args: Vec<OsString>) -> Cmd {
        Cmd {
            program: program.to_path_buf(),
            args,
            output: None,
        }
    }

    pub fn writes(mut self, output: &Path) -> Cmd {
        self.output = Some(output.to_path_buf());
        self
    }

    fn text(&self) -> String {
        let name = self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        std::iter::once(name)
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A row of the comparison: the peer's first `steps` commands, summed.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub steps: usize,
}

/// vhdkit against one peer (one or more commands run back to back).
#[derive(Debug, Clone)]
pub struct PairSpec {
    pub name: String,
    pub vhdkit: Cmd,
    pub peer: Vec<Cmd>,
    pub rows: Vec<Row>,
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub pair: String,
    pub vhdkit_command: String,
    pub peer_command: String,
    pub reps: usize,
    /// Medians, seconds.
    pub vhdkit_seconds: f64,
    pub peer_seconds: f64,
    /// `vhdkit_seconds / peer_seconds` (below 1: vhdkit is faster).
    pub ratio: f64,
    /// `peer_seconds / vhdkit_seconds`.
    pub speedup: f64,
    /// Highest peak RSS over vhdkit's runs, and over the peer's.
    pub vhdkit_max_rss_bytes: u64,
    pub peer_max_rss_bytes: u64,
    pub vhdkit_runs_seconds: Vec<f64>,
    pub peer_runs_seconds: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The median of `v` (the upper one for an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `cmd` after a `sync`, its output removed first.
fn run_one(cmd: &Cmd, sync_first: bool) -> Result<Measured, String> {
    if let Some(o) = &cmd.output {
        let _ = std::fs::remove_file(o);
    }
    if sync_first {
        measure::sync_all();
    }
    let m = measure::run(&cmd.program, &cmd.args).map_err(|e| e.to_string())?;
    if m.ok() {
        Ok(m)
    } else {
        Err(format!("{}: {}", cmd.text(), m.error_text()))
    }
}

/// Measures one pair `reps` times, alternating which side goes first.
pub fn compare(pair: &PairSpec, reps: usize, steps: &dyn Steps) -> Vec<Comparison> {
    let reps = reps.max(1);
    let mut ours: Vec<Measured> = Vec::new();
    // Per rep, the time and peak RSS of each peer command.
    let mut theirs: Vec<Vec<Measured>> = Vec::new();
    let mut error = None;
    'reps: for rep in 0..reps {
        for side in 0..2 {
            let vhdkit_turn = (side == 0) == (rep % 2 == 0);
            if vhdkit_turn {
                steps.step(&format!("{}: vhdkit", pair.name));
                match run_one(&pair.vhdkit, true) {
                    Ok(m) => ours.push(m),
                    Err(e) => {
                        error = Some(e);
                        break 'reps;
                    }
                }
            } else {
                steps.step(&format!("{}: peer", pair.name));
                let mut rep_runs = Vec::new();
                for (i, cmd) in pair.peer.iter().enumerate() {
                    match run_one(cmd, i == 0) {
                        Ok(m) => rep_runs.push(m),
                        Err(e) => {
                            error = Some(e);
                            break 'reps;
                        }
                    }
                }
                theirs.push(rep_runs);
            }
        }
    }
    for cmd in std::iter::once(&pair.vhdkit).chain(&pair.peer) {
        if let Some(o) = &cmd.output {
            let _ = std::fs::remove_file(o);
        }
    }
    let vhdkit_runs: Vec<f64> = ours.iter().map(|m| m.wall_seconds).collect();
    let vhdkit_rss = ours.iter().map(|m| m.max_rss_bytes).max().unwrap_or(0);
    let v = median(&vhdkit_runs);
    pair.rows
        .iter()
        .map(|row| {
            let used = &pair.peer[..row.steps.min(pair.peer.len())];
            let peer_runs: Vec<f64> = theirs
                .iter()
                .map(|r| r.iter().take(row.steps).map(|m| m.wall_seconds).sum())
                .collect();
            let p = median(&peer_runs);
            let ok = error.is_none() && v > 0.0 && p > 0.0;
            let ratio = if ok { v / p } else { 0.0 };
            Comparison {
                pair: format!("{} {}", pair.name, row.label)
                    .trim_end()
                    .to_string(),
                vhdkit_command: pair.vhdkit.text(),
                peer_command: used.iter().map(Cmd::text).collect::<Vec<_>>().join(" && "),
                reps,
                vhdkit_seconds: v,
                peer_seconds: p,
                ratio,
                speedup: if ok { p / v } else { 0.0 },
                vhdkit_max_rss_bytes: vhdkit_rss,
                peer_max_rss_bytes: theirs
                    .iter()
                    .flat_map(|r| r.iter().take(row.steps))
                    .map(|m| m.max_rss_bytes)
                    .max()
                    .unwrap_or(0),
                vhdkit_runs_seconds: vhdkit_runs.clone(),
                peer_runs_seconds: peer_runs,
                error: error.clone(),
            }
        })
        .collect()
}

/// Peak resident memory any vhdkit run may use.
pub const MAX_RSS_BYTES: u64 = 64 << 20;

/// What the comparisons need to know about the input.
pub struct Inputs<'a> {
    pub vhdkit: &'a Path,
    /// The input, and whether it is raw (else a VHD qemu-img reads as `vpc`).
    pub input: &'a Path,
    pub input_is_raw: bool,
    /// A dynamic VHD of the same disk (for the dynamic → raw pair and as
    /// md5sum's input in the digest-while-writing pair).
    pub dynamic: Option<&'a Path>,
    /// Where outputs go.
    pub dir: &'a Path,
    /// Label prefix ("sparse", "dense", or empty).
    pub label: &'a str,
}

/// One row summing the peer's first `steps` commands.
fn single_row(steps: usize) -> Vec<Row> {
    vec![Row {
        label: String::new(),
        steps,
    }]
}

/// What every pair builder shares: the inputs, output names, and `sync`.
struct Pairing<'a, 'b> {
    inp: &'a Inputs<'b>,
    prefix: String,
    sync: Option<PathBuf>,
}

impl Pairing<'_, '_> {
    fn ours(&self, name: &str) -> PathBuf {
        self.inp.dir.join(format!("cmp-vhdkit-{name}"))
    }

    fn peer_out(&self, name: &str) -> PathBuf {
        self.inp.dir.join(format!("cmp-peer-{name}"))
    }

    /// The peer's command, then `sync OUT` when `sync` is installed.
    fn with_sync(&self, cmd: Cmd, out: &Path) -> Vec<Cmd> {
        let mut steps = vec![cmd];
        if let Some(s) = &self.sync {
            steps.push(Cmd::new(s, args![out]));
        }
        steps
    }

    /// The peer as is, and (with `sync`) the peer plus `sync OUT`.
    fn rows(&self) -> Vec<Row> {
        let mut rows = vec![Row {
            label: "(peer as is)".into(),
            steps: 1,
        }];
        if self.sync.is_some() {
            rows.push(Row {
                label: "(peer + sync OUT)".into(),
                steps: 2,
            });
        }
        rows
    }

    /// convert → dynamic, and dynamic → raw, against qemu-img.
    fn qemu_pairs(&self, qemu: &Path, pairs: &mut Vec<PairSpec>) {
        let (v, input, prefix) = (self.inp.vhdkit, self.inp.input, &self.prefix);
        let fmt = if self.inp.input_is_raw { "raw" } else { "vpc" };
        let (o, p) = (self.ours("to-dynamic.vhd"), self.peer_out("to-dynamic.vhd"));
        let peer = Cmd::new(
            qemu,
            args![
                "convert",
                "-f",
                fmt,
                "-O",
                "vpc",
                "-o",
                "force_size=on",
                input,
                p
            ],
        )
        .writes(&p);
        pairs.push(PairSpec {
            name: format!(
                "{prefix}convert {} -> dynamic vs qemu-img",
                if self.inp.input_is_raw { "raw" } else { "vhd" }
            ),
            vhdkit: Cmd::new(v, args!["convert", input, o, "--to", "dynamic", "-q"]).writes(&o),
            peer: self.with_sync(peer, &p),
            rows: self.rows(),
        });
        if let Some(d) = self.inp.dynamic {
            let (o, p) = (
                self.ours("from-dynamic.img"),
                self.peer_out("from-dynamic.img"),
            );
            let peer = Cmd::new(qemu, args!["convert", "-f", "vpc", "-O", "raw", d, p]).writes(&p);
            pairs.push(PairSpec {
                name: format!("{prefix}convert dynamic -> raw vs qemu-img"),
                vhdkit: Cmd::new(v, args!["convert", d, o, "--to", "raw", "-q"]).writes(&o),
                peer: self.with_sync(peer, &p),
                rows: self.rows(),
            });
        }
    }

    /// Digests while writing against md5sum of the output, and `checksum`
    /// against md5sum and sha512sum (one and both).
    fn digest_pairs(&self, pairs: &mut Vec<PairSpec>) {
        let (v, input, prefix) = (self.inp.vhdkit, self.inp.input, &self.prefix);
        let md5sum = measure::which("md5sum");
        let sha512sum = measure::which("sha512sum");
        if let (Some(md5sum), Some(d)) = (&md5sum, self.inp.dynamic) {
            let o = self.ours("digested.vhd");
            pairs.push(PairSpec {
                name: format!(
                    "{prefix}convert -> dynamic --checksum md5,sha512 vs md5sum of the output"
                ),
                vhdkit: Cmd::new(
                    v,
                    args![
                        "convert",
                        input,
                        o,
                        "--to",
                        "dynamic",
                        "--checksum",
                        "md5,sha512",
                        "-q"
                    ],
                )
                .writes(&o),
                peer: vec![Cmd::new(md5sum, args![d])],
                rows: single_row(1),
            });
        }
        let checksum = |algo: &str| Cmd::new(v, args!["checksum", input, "--algo", algo, "-q"]);
        if let Some(md5sum) = &md5sum {
            pairs.push(PairSpec {
                name: format!("{prefix}checksum md5 vs md5sum"),
                vhdkit: checksum("md5"),
                peer: vec![Cmd::new(md5sum, args![input])],
                rows: single_row(1),
            });
        }
        if let Some(sha512sum) = &sha512sum {
            pairs.push(PairSpec {
                name: format!("{prefix}checksum sha512 vs sha512sum"),
                vhdkit: checksum("sha512"),
                peer: vec![Cmd::new(sha512sum, args![input])],
                rows: single_row(1),
            });
        }
        if let (Some(md5sum), Some(sha512sum)) = (&md5sum, &sha512sum) {
            pairs.push(PairSpec {
                name: format!("{prefix}checksum md5,sha512 vs md5sum then sha512sum"),
                vhdkit: checksum("md5,sha512"),
                peer: vec![
                    Cmd::new(md5sum, args![input]),
                    Cmd::new(sha512sum, args![input]),
                ],
                rows: single_row(2),
            });
        }
    }
}

/// The pairs that can run here: each only when its peer is installed.
pub fn standard_pairs(inp: &Inputs<'_>) -> Vec<PairSpec> {
    let pairing = Pairing {
        inp,
        prefix: if inp.label.is_empty() {
            String::new()
        } else {
            format!("{} ", inp.label)
        },
        sync: measure::which("sync"),
    };
    let mut pairs = Vec::new();
    if let Some(qemu) = measure::which("qemu-img") {
        pairing.qemu_pairs(&qemu, &mut pairs);
    }
    pairing.digest_pairs(&mut pairs);
    if let (Some(cp), true) = (measure::which("cp"), inp.input_is_raw) {
        let (o, p) = (pairing.ours("copy.img"), pairing.peer_out("copy.img"));
        let peer = Cmd::new(&cp, args!["--sparse=always", inp.input, p]).writes(&p);
        pairs.push(PairSpec {
            name: format!("{}convert raw -> raw vs cp --sparse=always", pairing.prefix),
            vhdkit: Cmd::new(
                inp.vhdkit,
                args!["convert", inp.input, o, "--to", "raw", "-q"],
            )
            .writes(&o),
            peer: pairing.with_sync(peer, &p),
            rows: pairing.rows(),
        });
    }
    pairs
}

/// How many measured runs [`compare`] makes for `pairs` (progress totals).
pub fn run_count(pairs: &[PairSpec], reps: usize) -> u64 {
    (pairs.len() * reps.max(1) * 2) as u64
}
