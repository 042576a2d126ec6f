//! The stages `vhdkit bench` times: every command of the binary under test,
//! each run in its own child process (see [`super::measure`]) on one input.
//!
//! Outputs go to the work folder and are removed as soon as no later stage
//! reads them, so a large sweep needs little more disk than its inputs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::measure::{self, Measured};
use super::{InputInfo, Steps};
use crate::{Error, Result};

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skipped,
    Failed,
}

/// One stage's measurements (the median run by wall time when repeated).
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub name: String,
    pub status: Status,
    /// Why it was skipped or how it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The command line of the measured run.
    pub argv: Vec<String>,
    pub runs: usize,
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub sys_seconds: f64,
    pub cpu_seconds: f64,
    pub max_rss_bytes: u64,
    /// Virtual bytes per wall second, GB/s (10^9).
    pub virtual_gbps: f64,
    /// Allocated (stored) input bytes per wall second, GB/s.
    pub allocated_gbps: f64,
}

impl StageResult {
    fn not_run(name: &str, status: Status, reason: String) -> StageResult {
        StageResult {
            name: name.into(),
            status,
            reason: Some(reason),
            argv: Vec::new(),
            runs: 0,
            wall_seconds: 0.0,
            user_seconds: 0.0,
            sys_seconds: 0.0,
            cpu_seconds: 0.0,
            max_rss_bytes: 0,
            virtual_gbps: 0.0,
            allocated_gbps: 0.0,
        }
    }

    fn from_runs(name: &str, mut runs: Vec<Measured>, input: &InputInfo) -> StageResult {
        let n = runs.len();
        if let Some(bad) = runs.iter().find(|m| !m.ok()) {
            let mut r = StageResult::not_run(name, Status::Failed, bad.error_text());
            r.argv.clone_from(&bad.argv);
            r.runs = n;
            return r;
        }
        runs.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
        let Some(m) = runs.get(n / 2) else {
            return StageResult::not_run(name, Status::Failed, "no run".into());
        };
        StageResult {
            name: name.into(),
            status: Status::Ok,
            reason: None,
            argv: m.argv.clone(),
            runs: n,
            wall_seconds: m.wall_seconds,
            user_seconds: m.user_seconds,
            sys_seconds: m.sys_seconds,
            cpu_seconds: m.cpu_seconds(),
            max_rss_bytes: m.max_rss_bytes,
            virtual_gbps: super::gbps(input.virtual_size_bytes, m.wall_seconds),
            allocated_gbps: super::gbps(input.allocated_bytes, m.wall_seconds),
        }
    }
}

/// The stage names, in the order they run (for progress totals and tables).
pub const STAGES: [&str; 12] = [
    "info",
    "checksum md5",
    "checksum sha512",
    "checksum crc32",
    "checksum all",
    "convert dynamic",
    "check",
    "convert fixed",
    "convert raw",
    "convert dynamic->raw",
    "compact",
    "expand 2x",
];

/// Paths the stages share.
pub struct Work<'a> {
    pub vhdkit: &'a Path,
    pub dir: &'a Path,
    pub input: &'a InputInfo,
    pub block_size: u32,
    pub reps: usize,
    /// Why a generated disk has no partition and filesystem (the reason
    /// `expand` is skipped), when it has none.
    pub no_fs: Option<&'a str>,
}

impl Work<'_> {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Runs `vhdkit args` `reps` times, removing `output` before each run.
    fn time(&self, name: &str, args: Vec<OsString>, output: Option<&Path>) -> StageResult {
        let mut runs = Vec::new();
        for _ in 0..self.reps.max(1) {
            if let Some(o) = output {
                let _ = std::fs::remove_file(o);
            }
            measure::sync_all();
            match measure::run(self.vhdkit, &args) {
                Ok(m) => runs.push(m),
                Err(e) => return StageResult::not_run(name, Status::Failed, e.to_string()),
            }
        }
        StageResult::from_runs(name, runs, self.input)
    }
}

/// Runs every stage on `work.input`. Returns the results, and the dynamic
/// VHD made by `convert dynamic` (kept for the peer comparisons; the caller
/// removes it) when that stage succeeded.
pub fn run_all(work: &Work<'_>, steps: &dyn Steps) -> (Vec<StageResult>, Option<PathBuf>) {
    let input = work.input.path.clone();
    let vhd_input = work.input.kind != crate::disk::Kind::Raw;
    let bs = work.block_size.to_string();
    let mut results = Vec::new();
    let step = |name: &str| steps.step(name);

    step("info");
    results.push(work.time("info", args!["info", input, "--json"], None));

    for (name, algo) in [
        ("checksum md5", "md5"),
        ("checksum sha512", "sha512"),
        ("checksum crc32", "crc32"),
        ("checksum all", "all"),
    ] {
        step(name);
        results.push(work.time(
            name,
            args!["checksum", input, "--algo", algo, "--json", "-q"],
            None,
        ));
    }

    step("convert dynamic");
    let dynamic = work.out("stage-dynamic.vhd");
    let r = work.time(
        "convert dynamic",
        args![
            "convert",
            input,
            dynamic,
            "--to",
            "dynamic",
            "--block-size",
            bs,
            "-q",
            "--json",
        ],
        Some(&dynamic),
    );
    let have_dynamic = r.status == Status::Ok;
    results.push(r);
    let dynamic = have_dynamic.then_some(dynamic);
    let needs_dynamic = |name: &str| {
        StageResult::not_run(
            name,
            Status::Skipped,
            "needs the output of `convert dynamic`, which failed".into(),
        )
    };

    step("check");
    let check_target = if vhd_input {
        Some(input.clone())
    } else {
        dynamic.clone()
    };
    results.push(match &check_target {
        Some(t) => work.time("check", args!["check", t, "--json"], None),
        None => needs_dynamic("check"),
    });

    for (name, to, file) in [
        ("convert fixed", "fixed", "stage-fixed.vhd"),
        ("convert raw", "raw", "stage-raw.img"),
    ] {
        step(name);
        let out = work.out(file);
        results.push(work.time(
            name,
            args!["convert", input, out, "--to", to, "-q", "--json"],
            Some(&out),
        ));
        let _ = std::fs::remove_file(&out);
    }

    step("convert dynamic->raw");
    let out = work.out("stage-dynamic-raw.img");
    results.push(match &dynamic {
        Some(d) => work.time(
            "convert dynamic->raw",
            args!["convert", d, out, "--to", "raw", "-q", "--json"],
            Some(&out),
        ),
        None => needs_dynamic("convert dynamic->raw"),
    });
    let _ = std::fs::remove_file(&out);

    step("compact");
    let out = work.out("stage-compact.vhd");
    results.push(match &dynamic {
        Some(d) => work.time(
            "compact",
            args!["compact", d, out, "-q", "--json"],
            Some(&out),
        ),
        None => needs_dynamic("compact"),
    });
    let _ = std::fs::remove_file(&out);

    step("expand 2x");
    results.push(expand_stage(work));
    (results, dynamic)
}

/// `expand` to twice the size, when the image has a partition and a
/// filesystem vhdkit can grow (decided by [`crate::grow::plan_expand`],
/// which reads only tables); skipped with its reason otherwise.
fn expand_stage(work: &Work<'_>) -> StageResult {
    const NAME: &str = "expand 2x";
    let input = &work.input.path;
    let Some(new_size) = work.input.virtual_size_bytes.checked_mul(2) else {
        return StageResult::not_run(NAME, Status::Skipped, "twice the size overflows".into());
    };
    let opts = crate::grow::ExpandOptions {
        size: new_size,
        rule: crate::partition::GrowRule::Nova,
        to: crate::writer::Target::Dynamic,
        disk_only: false,
        as_child: false,
        block_size: work.block_size,
        creator: crate::writer::DEFAULT_CREATOR.into(),
        no_sync: false,
        parents: crate::disk::ParentOptions::default(),
    };
    match crate::grow::plan_expand(input, &opts) {
        Err(e) => StageResult::not_run(NAME, Status::Skipped, format!("not expandable: {e}")),
        Ok(plan) if plan.filesystem.is_none() => StageResult::not_run(
            NAME,
            Status::Skipped,
            work.no_fs.map_or_else(
                || "no filesystem vhdkit can grow behind partition 1".into(),
                str::to_string,
            ),
        ),
        Ok(_) => {
            let out = work.out("stage-expanded.vhd");
            let r = work.time(
                NAME,
                args![
                    "expand",
                    input,
                    out,
                    "--size",
                    new_size.to_string(),
                    "--json",
                ],
                Some(&out),
            );
            let _ = std::fs::remove_file(&out);
            r
        }
    }
}

/// Describes the input file: kind, virtual size, bytes stored.
pub fn describe(path: &Path) -> Result<InputInfo> {
    use std::os::unix::fs::MetadataExt;
    let disk = crate::disk::open(path)?;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, "stat", e))?;
    Ok(InputInfo {
        path: path.to_path_buf(),
        kind: disk.kind(),
        virtual_size_bytes: disk.size_bytes(),
        file_size_bytes: meta.len(),
        // st_blocks counts 512-byte units whatever the file system's block size.
        allocated_bytes: meta.blocks().saturating_mul(512),
    })
}
