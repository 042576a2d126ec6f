//! Measuring a command: wall time, CPU time and peak resident memory of one
//! child process.
//!
//! A process's resident high-water mark cannot be reset, so every measured
//! stage runs in its own child and is reaped with `wait4`, which returns that
//! child's own resource usage (not the sum over all children, as
//! `getrusage(RUSAGE_CHILDREN)` would). `wait4` and `getrusage` have no safe
//! wrapper in std or rustix; the two calls below are the only `unsafe` in
//! this module, each on plain out-parameters.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::{Error, Result};

/// What one child process used.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// The command line, program first.
    pub argv: Vec<String>,
    /// Exit status (`None`: killed by a signal).
    pub exit_code: Option<i32>,
    pub wall_seconds: f64,
    pub user_seconds: f64,
    pub sys_seconds: f64,
    /// Peak resident set size of the child, in bytes.
    pub max_rss_bytes: u64,
    #[serde(skip)]
    pub stdout: Vec<u8>,
    #[serde(skip)]
    pub stderr: String,
}

impl Measured {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.sys_seconds
    }

    /// The last line of stderr, for a failure's reason.
    pub fn error_text(&self) -> String {
        let last = self.stderr.lines().rev().find(|l| !l.trim().is_empty());
        match (last, self.exit_code) {
            (Some(l), _) => l.trim().to_string(),
            (None, Some(c)) => format!("exit status {c}"),
            (None, None) => "killed by a signal".into(),
        }
    }
}

fn timeval_seconds(t: libc::timeval) -> f64 {
    // Seconds and microseconds of a CPU time: far inside f64's exact range.
    #[allow(clippy::cast_precision_loss)]
    let s = t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s
}

/// Runs `program args` to completion, capturing its output, and measures it.
pub fn run<S: AsRef<OsStr>>(program: &Path, args: &[S]) -> Result<Measured> {
    let argv: Vec<String> = std::iter::once(program.as_os_str())
        .chain(args.iter().map(AsRef::as_ref))
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(program, "spawn", e))?;
    let mut stderr_pipe = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let mut stdout = Vec::new();
    if let Some(mut p) = child.stdout.take() {
        let _ = p.read_to_end(&mut stdout);
    }
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| Error::Usage(format!("pid {} out of range", child.id())))?;
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is plain old data; all-zero bytes are a valid value.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child (std's `Child` is never
        // waited on after this), and both pointers are to live locals.
        #[allow(unsafe_code)]
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io(program, "wait4", e));
        }
    }
    let wall_seconds = start.elapsed().as_secs_f64();
    let stderr = stderr_reader.join().unwrap_or_default();
    let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Measured {
        argv,
        exit_code,
        wall_seconds,
        user_seconds: timeval_seconds(usage.ru_utime),
        sys_seconds: timeval_seconds(usage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        stdout,
        stderr,
    })
}

/// CPU time (user + system) this process has used so far.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: as above, a zeroed `rusage` is valid.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a live local the call only writes.
    #[allow(unsafe_code)]
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if r != 0 {
        return 0.0;
    }
    timeval_seconds(usage.ru_utime) + timeval_seconds(usage.ru_stime)
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    which(tool).is_some()
}

/// The full path of `tool` on PATH.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Flushes every file system's dirty pages (`sync`), so that writeback left by
/// one run does not slow the next. Untimed; nothing is dropped from the cache.
pub fn sync_all() {
    rustix::fs::sync();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() {
        let m = run(
            Path::new("/bin/sh"),
            &["-c", "echo hi; echo oops >&2; exit 3"],
        )
        .unwrap();
        assert_eq!(m.exit_code, Some(3));
        assert_eq!(m.stdout, b"hi\n");
        assert_eq!(m.error_text(), "oops");
        assert!(m.max_rss_bytes > 0);
        assert!(m.wall_seconds > 0.0);
    }
}
