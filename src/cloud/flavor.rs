//! What Nova checks when a server boots from the image on a flavor: the
//! API's flavor/image checks (with Nova's exception names and messages),
//! the scheduler's `hypervisor_version_requires` predicate, the hypervisor's
//! refusal to shrink a disk, and, for `auto_disk_config=True`, what the
//! XenAPI driver would do to the disk (through [`crate::grow::plan_expand`]).
//!
//! The version grammar is the one Nova hands to Python's
//! `distutils.versionpredicate.VersionPredicate` as `image_prop (<value>)`:
//! comma-separated clauses `(<=|>=|<|>|!=|==) VERSION`, each VERSION a
//! `StrictVersion` (`N.N[.N][{a|b}N]`). Nothing here reads a file.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use super::nova::ExpandReport;
use super::{Line, Status};

/// Bytes in one of Nova's "GB" (flavor root disks and `min_disk` are GiB).
pub const GIB: u64 = 1 << 30;

/// A flavor as given on the command line: `NAME:RAM_MB:ROOT_GB`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Flavor {
    /// The flavor's name.
    pub name: String,
    /// Its RAM in MiB.
    pub ram_mb: u64,
    /// Its root disk in GiB.
    pub root_gb: u64,
}

impl Flavor {
    /// Parses `NAME:RAM_MB:ROOT_GB` (the name may itself hold colons).
    pub fn parse(text: &str) -> Result<Flavor, String> {
        let mut parts = text.rsplitn(3, ':');
        let (Some(root), Some(ram), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "--flavor {text:?}: expected NAME:RAM_MB:ROOT_GB (e.g. m1.small:2048:20)"
            ));
        };
        let num = |what: &str, v: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                format!("--flavor {text:?}: {what} {v:?} is not a non-negative integer")
            })
        };
        if name.is_empty() {
            return Err(format!("--flavor {text:?}: empty flavor name"));
        }
        Ok(Flavor {
            name: name.to_string(),
            ram_mb: num("RAM_MB", ram)?,
            root_gb: num("ROOT_GB", root)?,
        })
    }

    /// The root disk in bytes, as Nova computes it (`root_gb * units.Gi`).
    pub fn root_bytes(&self) -> u64 {
        self.root_gb.saturating_mul(GIB)
    }
}

/// Nova's exceptions a boot request can end in, with Nova's message texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NovaError {
    #[error("Flavor's memory is too small for requested image.")]
    FlavorMemoryTooSmall,
    #[error("Flavor's disk is too small for requested image. Flavor disk is {flavor_size} bytes, image is {image_size} bytes.")]
    FlavorDiskSmallerThanImage { flavor_size: u64, image_size: u64 },
    #[error("Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is {flavor_size} bytes, minimum size is {image_min_disk} bytes.")]
    FlavorDiskSmallerThanMinDisk {
        flavor_size: u64,
        image_min_disk: u64,
    },
    #[error("Requested image {image} has automatic disk resize disabled.")]
    AutoDiskConfigDisabledByImage { image: String },
    #[error("Only volume-backed servers are allowed for flavors with zero disk.")]
    BootFromVolumeRequiredForZeroDiskFlavor,
}

impl NovaError {
    /// The exception's class name in Nova.
    pub fn name(&self) -> &'static str {
        match self {
            NovaError::FlavorMemoryTooSmall => "FlavorMemoryTooSmall",
            NovaError::FlavorDiskSmallerThanImage { .. } => "FlavorDiskSmallerThanImage",
            NovaError::FlavorDiskSmallerThanMinDisk { .. } => "FlavorDiskSmallerThanMinDisk",
            NovaError::AutoDiskConfigDisabledByImage { .. } => "AutoDiskConfigDisabledByImage",
            NovaError::BootFromVolumeRequiredForZeroDiskFlavor => {
                "BootFromVolumeRequiredForZeroDiskFlavor"
            }
        }
    }

    fn line(&self, status: Status) -> Line {
        Line::new(self.name(), status, format!("{}: {self}", self.name()))
    }
}

/// A `StrictVersion`: `major.minor[.patch][{a|b}N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrictVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// `a` or `b` and its number; a release sorts after its prereleases.
    pub prerelease: Option<(char, u64)>,
}

impl StrictVersion {
    /// Parses as `distutils.version.StrictVersion` does.
    pub fn parse(text: &str) -> Result<StrictVersion, String> {
        let bad = || format!("invalid version number '{text}'");
        let digits = |s: &str| -> Result<u64, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (numbers, prerelease) = match text.find(['a', 'b']) {
            Some(i) => {
                let tag = char::from(text.as_bytes()[i]);
                (&text[..i], Some((tag, digits(&text[i + 1..])?)))
            }
            None => (text, None),
        };
        let parts: Vec<&str> = numbers.split('.').collect();
        let (major, minor, patch) = match parts.as_slice() {
            [a, b] => (digits(a)?, digits(b)?, 0),
            [a, b, c] => (digits(a)?, digits(b)?, digits(c)?),
            _ => return Err(bad()),
        };
        Ok(StrictVersion {
            major,
            minor,
            patch,
            prerelease,
        })
    }
}

impl PartialOrd for StrictVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for StrictVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.prerelease, other.prerelease) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(&b),
            })
    }
}

impl fmt::Display for StrictVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.patch != 0 {
            write!(f, ".{}", self.patch)?;
        }
        if let Some((tag, n)) = self.prerelease {
            write!(f, "{tag}{n}")?;
        }
        Ok(())
    }
}

/// A comparison operator of the predicate grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Le,
    Ge,
    Lt,
    Gt,
    Ne,
    Eq,
}

impl Op {
    /// In the order the grammar tries them (`<=` before `<`).
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
        ("!=", Op::Ne),
        ("==", Op::Eq),
    ];

    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Le => o != Ordering::Greater,
            Op::Ge => o != Ordering::Less,
            Op::Lt => o == Ordering::Less,
            Op::Gt => o == Ordering::Greater,
            Op::Ne => o != Ordering::Equal,
            Op::Eq => o == Ordering::Equal,
        }
    }

    fn text(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(t, _)| t)
    }
}

/// One clause: `>= 6.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clause {
    pub op: Op,
    pub version: StrictVersion,
}

/// A parsed `hypervisor_version_requires`: every clause must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRequirement {
    pub clauses: Vec<Clause>,
}

impl VersionRequirement {
    /// Parses the property value with Nova's grammar; the error is Python's
    /// message (`bad package restriction syntax: '6.2'`,
    /// `invalid version number '6.x'`).
    pub fn parse(text: &str) -> Result<VersionRequirement, String> {
        let clauses = text
            .split(',')
            .map(parse_clause)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VersionRequirement { clauses })
    }

    /// Whether a host of `version` satisfies every clause.
    pub fn satisfied_by(&self, version: &StrictVersion) -> bool {
        self.clauses
            .iter()
            .all(|c| c.op.holds(version.cmp(&c.version)))
    }
}

impl fmt::Display for VersionRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", c.op.text(), c.version)?;
        }
        Ok(())
    }
}

/// `^\s*(<=|>=|<|>|!=|==)\s*([^\s,]+)\s*$`, then a `StrictVersion`.
fn parse_clause(pred: &str) -> Result<Clause, String> {
    let bad = || format!("bad package restriction syntax: '{pred}'");
    let t = pred.trim();
    let (op, rest) = Op::ALL
        .iter()
        .find_map(|(s, op)| t.strip_prefix(s).map(|r| (*op, r)))
        .ok_or_else(bad)?;
    let version = rest.trim_start();
    if version.is_empty() || version.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(Clause {
        op,
        version: StrictVersion::parse(version)?,
    })
}

/// What the flavor checks need to know about the image.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    /// The image's name or file, for messages.
    pub image: String,
    /// Glance's `size`: the bytes uploaded (unknown for an unpackaged folder).
    pub size: Option<u64>,
    pub min_disk_gb: u64,
    pub min_ram_mb: u64,
    /// The largest virtual size a hypervisor sees (current size, or qemu's).
    pub virtual_size: Option<u64>,
    pub auto_disk_config: Option<String>,
    pub hypervisor_version_requires: Option<String>,
}

/// Options of the flavor checks.
#[derive(Debug, Clone, Default)]
pub struct FlavorOptions {
    /// The hosts' hypervisor version (`--hypervisor-version`).
    pub hypervisor_version: Option<String>,
    /// The user asks for automatic disk config (`OS-DCF:diskConfig=AUTO`).
    pub request_auto_disk_config: bool,
}

/// The checks of one flavor.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FlavorReport {
    /// The flavor checked.
    pub flavor: Flavor,
    /// Its PASS/WARN/FAIL lines.
    pub lines: Vec<Line>,
    /// `expand --dry-run` for this root disk, when `auto_disk_config` is True.
    pub expand: Option<ExpandReport>,
}

/// How Nova reads `auto_disk_config`: `disabled` (stripped, any case), else
/// oslo's non-strict `bool_from_string` (anything unknown is False).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoDiskConfig {
    True,
    False,
    Disabled,
}

/// oslo.utils `strutils.TRUE_STRINGS` / `FALSE_STRINGS`.
pub const TRUE_STRINGS: [&str; 6] = ["1", "t", "true", "on", "y", "yes"];
pub const FALSE_STRINGS: [&str; 6] = ["0", "f", "false", "off", "n", "no"];

impl AutoDiskConfig {
    /// As Nova reads the property; `None` for a value it does not know
    /// (which Nova silently takes as False).
    pub fn parse_strict(value: &str) -> Option<AutoDiskConfig> {
        let v = value.trim().to_lowercase();
        if v == "disabled" {
            Some(AutoDiskConfig::Disabled)
        } else if TRUE_STRINGS.contains(&v.as_str()) {
            Some(AutoDiskConfig::True)
        } else if FALSE_STRINGS.contains(&v.as_str()) {
            Some(AutoDiskConfig::False)
        } else {
            None
        }
    }

    /// What Nova ends up with.
    pub fn parse_nova(value: &str) -> AutoDiskConfig {
        AutoDiskConfig::parse_strict(value).unwrap_or(AutoDiskConfig::False)
    }
}

/// Runs Nova's checks of `image` on `flavor`. `expand` plans the
/// auto_disk_config expansion for a root disk of the given bytes.
pub fn check_flavor(
    image: &ImageFacts,
    flavor: &Flavor,
    opts: &FlavorOptions,
    expand: &dyn Fn(u64) -> crate::Result<ExpandReport>,
) -> FlavorReport {
    // compute/api.py: memory, then the root disk (skipped for root_gb 0).
    let mut lines = vec![memory_line(image, flavor)];
    if flavor.root_gb == 0 {
        lines.push(zero_disk_line(image));
    } else {
        root_disk_lines(image, flavor.root_bytes(), &mut lines);
    }
    if let Some(req) = &image.hypervisor_version_requires {
        lines.push(version_line(req, opts.hypervisor_version.as_deref()));
    }
    let expand_report = auto_disk_config_lines(image, flavor, opts, expand, &mut lines);
    FlavorReport {
        flavor: flavor.clone(),
        lines,
        expand: expand_report,
    }
}

/// Nova's memory check: `min_ram` against the flavor's RAM.
fn memory_line(image: &ImageFacts, flavor: &Flavor) -> Line {
    if image.min_ram_mb > flavor.ram_mb {
        let mut l = NovaError::FlavorMemoryTooSmall.line(Status::Fail);
        l.message.push_str(&format!(
            " (min_ram {} MB > flavor RAM {} MB)",
            image.min_ram_mb, flavor.ram_mb
        ));
        l
    } else {
        Line::new(
            "FLAVOR_MEMORY",
            Status::Pass,
            format!(
                "min_ram {} MB <= flavor RAM {} MB",
                image.min_ram_mb, flavor.ram_mb
            ),
        )
    }
}

/// A flavor with no root disk: Nova skips the disk checks and asks for a volume.
fn zero_disk_line(image: &ImageFacts) -> Line {
    Line::new(
        "BootFromVolumeRequiredForZeroDiskFlavor",
        Status::Warn,
        format!(
            "root disk 0: Nova skips the disk checks, and (since Victoria, by default policy) refuses an image-backed server: {}: {} Boot from a volume of at least {} GiB.",
            NovaError::BootFromVolumeRequiredForZeroDiskFlavor.name(),
            NovaError::BootFromVolumeRequiredForZeroDiskFlavor,
            image.min_disk_gb
        ),
    )
}

/// Nova's root disk checks (image size, `min_disk`) and the hypervisor's
/// refusal to shrink, for a root disk of `root` bytes.
fn root_disk_lines(image: &ImageFacts, root: u64, lines: &mut Vec<Line>) {
    match image.size {
        Some(size) if size > root => lines.push(
            NovaError::FlavorDiskSmallerThanImage {
                flavor_size: root,
                image_size: size,
            }
            .line(Status::Fail),
        ),
        Some(size) => lines.push(Line::new(
            "FLAVOR_DISK_IMAGE",
            Status::Pass,
            format!("image size {size} bytes <= root disk {root} bytes"),
        )),
        None => lines.push(Line::new(
            "FLAVOR_DISK_IMAGE",
            Status::Warn,
            "image size unknown until the upload file exists (use --package)".to_string(),
        )),
    }
    let min_disk = image.min_disk_gb.saturating_mul(GIB);
    if min_disk > root {
        lines.push(
            NovaError::FlavorDiskSmallerThanMinDisk {
                flavor_size: root,
                image_min_disk: min_disk,
            }
            .line(Status::Fail),
        );
    } else {
        lines.push(Line::new(
            "FLAVOR_DISK_MIN_DISK",
            Status::Pass,
            format!("min_disk {min_disk} bytes <= root disk {root} bytes"),
        ));
    }
    if let Some(v) = image.virtual_size {
        if v > root {
            lines.push(Line::new(
                "HYPERVISOR_NO_SHRINK",
                Status::Fail,
                format!(
                    "virtual size {v} bytes is above the root disk {root} bytes: the hypervisor grows a disk to the flavor, never shrinks it, and refuses the server"
                ),
            ));
        }
    }
}

/// The image's `auto_disk_config` against the request, and the simulated
/// expansion when Nova would resize; returns that expansion's report.
fn auto_disk_config_lines(
    image: &ImageFacts,
    flavor: &Flavor,
    opts: &FlavorOptions,
    expand: &dyn Fn(u64) -> crate::Result<ExpandReport>,
    lines: &mut Vec<Line>,
) -> Option<ExpandReport> {
    let adc = image
        .auto_disk_config
        .as_deref()
        .map(AutoDiskConfig::parse_nova);
    if opts.request_auto_disk_config && adc == Some(AutoDiskConfig::Disabled) {
        lines.push(
            NovaError::AutoDiskConfigDisabledByImage {
                image: image.image.clone(),
            }
            .line(Status::Fail),
        );
    }
    let resize = match adc {
        Some(AutoDiskConfig::True) => true,
        None | Some(AutoDiskConfig::False) => opts.request_auto_disk_config,
        Some(AutoDiskConfig::Disabled) => false,
    };
    if !resize || flavor.root_gb == 0 {
        return None;
    }
    let root = flavor.root_bytes();
    match expand(root) {
        Err(e) => {
            lines.push(Line::new(
                "AUTO_DISK_CONFIG_EXPAND",
                Status::Warn,
                format!("auto_disk_config simulation unavailable: {e}"),
            ));
            None
        }
        Ok(r) => {
            lines.push(expand_line(&r, root));
            Some(r)
        }
    }
}

/// The scheduler's view of `hypervisor_version_requires` on a host of
/// version `host`.
pub fn version_line(req: &str, host: Option<&str>) -> Line {
    const CODE: &str = "HYPERVISOR_VERSION";
    if req.is_empty() {
        return Line::new(
            CODE,
            Status::Warn,
            "hypervisor_version_requires is empty: the scheduler ignores it".to_string(),
        );
    }
    let parsed = match VersionRequirement::parse(req) {
        Ok(p) => p,
        Err(e) => {
            return Line::new(
                CODE,
                Status::Fail,
                format!("hypervisor_version_requires {req:?}: {e}: the scheduler's ImagePropertiesFilter raises on it"),
            )
        }
    };
    let Some(host) = host else {
        return Line::new(
            CODE,
            Status::Warn,
            format!("hypervisor_version_requires {parsed}: give --hypervisor-version to check it"),
        );
    };
    match StrictVersion::parse(host) {
        Err(e) => Line::new(CODE, Status::Warn, format!("--hypervisor-version: {e}")),
        Ok(v) if parsed.satisfied_by(&v) => Line::new(
            CODE,
            Status::Pass,
            format!("hypervisor {v} satisfies {parsed}"),
        ),
        Ok(v) => Line::new(
            CODE,
            Status::Fail,
            format!("hypervisor {v} does not satisfy {parsed}: the scheduler finds no host (NoValidHost)"),
        ),
    }
}

/// The expand verdict as a line: a refusal is a FAIL even though Nova only
/// logs it, since the property promises a resize that will not happen.
fn expand_line(r: &ExpandReport, root: u64) -> Line {
    const CODE: &str = "AUTO_DISK_CONFIG_EXPAND";
    if let Some(refusal) = &r.verdict.nova_refusal {
        return Line::new(
            CODE,
            Status::Fail,
            format!(
                "auto_disk_config=True but Nova would not resize on a {root}-byte root disk (it logs this and boots the server unresized): {refusal}"
            ),
        );
    }
    if !r.verdict.nova_resizes {
        return Line::new(
            CODE,
            Status::Warn,
            format!(
                "auto_disk_config=True: Nova would not resize the partition and filesystem ({})",
                r.verdict.notes.join("; ")
            ),
        );
    }
    let part = r
        .partitions_after
        .first()
        .map(|p| {
            format!(
                "partition {} {} bytes",
                p.number,
                p.size_sectors.saturating_mul(512)
            )
        })
        .unwrap_or_else(|| "no partition table".into());
    let fs = r
        .filesystem
        .as_ref()
        .map(|f| {
            format!(
                "{} {} -> {} bytes",
                f.kind, f.size_before_bytes, f.size_after_bytes
            )
        })
        .unwrap_or_else(|| "no filesystem".into());
    Line::new(
        CODE,
        Status::Pass,
        format!(
            "auto_disk_config=True: disk {} -> {} bytes; the guest sees {part}, {fs}",
            r.old_size, r.new_size
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> StrictVersion {
        StrictVersion::parse(s).unwrap()
    }

    #[test]
    fn strict_versions_parse_and_order() {
        assert_eq!(v("6.2"), v("6.2.0"));
        assert!(v("6.2.1") > v("6.2"));
        assert!(v("6.2a1") < v("6.2"));
        assert!(v("6.2a1") < v("6.2b1"));
        assert!(v("10.0") > v("9.99"));
        for bad in ["6", "6.x", "6.2.3.4", "", "v6.2", "6.2c1", "6..2", "6.2a"] {
            assert_eq!(
                StrictVersion::parse(bad).unwrap_err(),
                format!("invalid version number '{bad}'")
            );
        }
    }

    #[test]
    fn ge_clause_holds_as_nova_reads_it() {
        let r = VersionRequirement::parse(">=6.2").unwrap();
        assert!(r.satisfied_by(&v("6.2")));
        assert!(r.satisfied_by(&v("6.2.1")));
        assert!(!r.satisfied_by(&v("6.1.9")));
    }

    #[test]
    fn clauses_all_hold() {
        let r = VersionRequirement::parse(" >= 6.2 , <7.0,!=6.5").unwrap();
        assert_eq!(r.clauses.len(), 3);
        assert!(r.satisfied_by(&v("6.4")));
        assert!(!r.satisfied_by(&v("6.5")));
        assert!(!r.satisfied_by(&v("7.0")));
        for (text, host, ok) in [
            ("<=6.2", "6.2", true),
            ("<6.2", "6.2", false),
            (">6.2", "6.2.1", true),
            ("==6.2", "6.2.0", true),
            ("!=6.2", "6.2", false),
        ] {
            assert_eq!(
                VersionRequirement::parse(text)
                    .unwrap()
                    .satisfied_by(&v(host)),
                ok,
                "{text} on {host}"
            );
        }
    }

    #[test]
    fn bare_version_is_an_error() {
        assert_eq!(
            VersionRequirement::parse("6.2").unwrap_err(),
            "bad package restriction syntax: '6.2'"
        );
    }

    #[test]
    fn other_grammar_errors() {
        assert_eq!(
            VersionRequirement::parse("=6.2").unwrap_err(),
            "bad package restriction syntax: '=6.2'"
        );
        assert_eq!(
            VersionRequirement::parse(">=6.2,").unwrap_err(),
            "bad package restriction syntax: ''"
        );
        assert_eq!(
            VersionRequirement::parse(">= 6 .2").unwrap_err(),
            "bad package restriction syntax: '>= 6 .2'"
        );
        assert_eq!(
            VersionRequirement::parse(">=6.x").unwrap_err(),
            "invalid version number '6.x'"
        );
    }

    #[test]
    fn flavors_parse() {
        assert_eq!(
            Flavor::parse("m1:small:2048:20").unwrap(),
            Flavor {
                name: "m1:small".into(),
                ram_mb: 2048,
                root_gb: 20
            }
        );
        assert!(Flavor::parse("m1.small:2048").is_err());
        assert!(Flavor::parse("m1.small:-1:20").is_err());
        assert!(Flavor::parse(":1:20").is_err());
    }

    #[test]
    fn auto_disk_config_reads_as_nova_does() {
        for t in ["True", " true ", "1", "t", "on", "Y", "yes"] {
            assert_eq!(AutoDiskConfig::parse_strict(t), Some(AutoDiskConfig::True));
        }
        for f in ["False", "0", "f", "off", "n", "NO"] {
            assert_eq!(AutoDiskConfig::parse_strict(f), Some(AutoDiskConfig::False));
        }
        assert_eq!(
            AutoDiskConfig::parse_strict(" Disabled"),
            Some(AutoDiskConfig::Disabled)
        );
        assert_eq!(AutoDiskConfig::parse_strict("maybe"), None);
        assert_eq!(AutoDiskConfig::parse_nova("maybe"), AutoDiskConfig::False);
    }

    fn facts() -> ImageFacts {
        ImageFacts {
            image: "img".into(),
            size: Some(GIB),
            min_disk_gb: 2,
            min_ram_mb: 512,
            virtual_size: Some(2 * GIB),
            auto_disk_config: None,
            hypervisor_version_requires: None,
        }
    }

    fn unavailable(_: u64) -> crate::Result<ExpandReport> {
        Err(crate::Error::Usage("expand: not implemented yet".into()))
    }

    fn run(image: &ImageFacts, flavor: &str, opts: &FlavorOptions) -> FlavorReport {
        check_flavor(image, &Flavor::parse(flavor).unwrap(), opts, &unavailable)
    }

    fn codes(r: &FlavorReport, status: Status) -> Vec<&str> {
        r.lines
            .iter()
            .filter(|l| l.status == status)
            .map(|l| l.code.as_str())
            .collect()
    }

    #[test]
    fn a_flavor_that_fits_passes() {
        let r = run(&facts(), "m1:1024:2", &FlavorOptions::default());
        assert!(codes(&r, Status::Fail).is_empty(), "{:?}", r.lines);
    }

    #[test]
    fn flavor_memory_too_small() {
        let r = run(&facts(), "tiny:256:20", &FlavorOptions::default());
        let l = r
            .lines
            .iter()
            .find(|l| l.code == "FlavorMemoryTooSmall")
            .unwrap();
        assert_eq!(l.status, Status::Fail);
        assert!(l.message.starts_with(
            "FlavorMemoryTooSmall: Flavor's memory is too small for requested image."
        ));
    }

    #[test]
    fn flavor_disk_smaller_than_image() {
        let mut f = facts();
        f.size = Some(3 * GIB);
        f.min_disk_gb = 0;
        f.virtual_size = None;
        let r = run(&f, "m:1024:2", &FlavorOptions::default());
        assert_eq!(codes(&r, Status::Fail), ["FlavorDiskSmallerThanImage"]);
        assert!(r.lines.iter().any(|l| l.message
            == "FlavorDiskSmallerThanImage: Flavor's disk is too small for requested image. Flavor disk is 2147483648 bytes, image is 3221225472 bytes."));
    }

    #[test]
    fn flavor_disk_smaller_than_min_disk() {
        let mut f = facts();
        f.min_disk_gb = 5;
        let r = run(&f, "m:1024:4", &FlavorOptions::default());
        assert_eq!(codes(&r, Status::Fail), ["FlavorDiskSmallerThanMinDisk"]);
        assert!(r.lines.iter().any(|l| l.message
            == "FlavorDiskSmallerThanMinDisk: Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is 4294967296 bytes, minimum size is 5368709120 bytes."));
    }

    #[test]
    fn virtual_size_above_root_disk_is_refused() {
        let mut f = facts();
        f.min_disk_gb = 0;
        let r = run(&f, "m:1024:1", &FlavorOptions::default());
        assert_eq!(codes(&r, Status::Fail), ["HYPERVISOR_NO_SHRINK"]);
    }

    #[test]
    fn zero_root_disk_needs_a_volume() {
        let r = run(&facts(), "m:1024:0", &FlavorOptions::default());
        assert_eq!(
            codes(&r, Status::Warn),
            ["BootFromVolumeRequiredForZeroDiskFlavor"]
        );
        assert!(codes(&r, Status::Fail).is_empty());
    }

    #[test]
    fn auto_disk_config_disabled_refuses_a_request() {
        let mut f = facts();
        f.auto_disk_config = Some("disabled".into());
        let opts = FlavorOptions {
            request_auto_disk_config: true,
            ..Default::default()
        };
        let r = run(&f, "m:1024:2", &opts);
        assert!(r.lines.iter().any(|l| l.status == Status::Fail
            && l.message
                == "AutoDiskConfigDisabledByImage: Requested image img has automatic disk resize disabled."));
        let r = run(&f, "m:1024:2", &FlavorOptions::default());
        assert!(codes(&r, Status::Fail).is_empty());
    }

    #[test]
    fn auto_disk_config_true_reports_expand_or_its_absence() {
        let mut f = facts();
        f.auto_disk_config = Some("True".into());
        let r = run(&f, "m:1024:2", &FlavorOptions::default());
        let l = r
            .lines
            .iter()
            .find(|l| l.code == "AUTO_DISK_CONFIG_EXPAND")
            .unwrap();
        assert_eq!(l.status, Status::Warn);
        assert!(l
            .message
            .starts_with("auto_disk_config simulation unavailable: "));
    }

    fn expand_report(refusal: Option<&str>, resizes: bool) -> ExpandReport {
        use crate::cloud::nova::{FsGrowth, Verdict};
        use crate::partition::{PartitionInfo, PartitionRole, TableKind};
        let part = |end: u64| PartitionInfo {
            number: 1,
            start_lba: 2048,
            end_lba: end,
            size_sectors: end - 2048 + 1,
            type_id: "83".into(),
            bootable: true,
            name: None,
            unique_guid: None,
            attributes: None,
            role: PartitionRole::Primary,
        };
        ExpandReport {
            dry_run: true,
            input: "img".into(),
            output: None,
            old_size: GIB,
            new_size: 2 * GIB,
            table_kind: TableKind::Mbr,
            partitions_before: vec![part(2 * 1024 * 1024 - 1)],
            partitions_after: vec![part(4 * 1024 * 1024 - 1)],
            filesystem: Some(FsGrowth {
                kind: "ext4".into(),
                offset_bytes: 2048 * 512,
                size_before_bytes: GIB - MIB_BYTES,
                size_after_bytes: 2 * GIB - MIB_BYTES,
                before: Default::default(),
                after: Default::default(),
                detail: serde_json::Value::Null,
            }),
            changed: Vec::new(),
            changed_bytes: 0,
            verdict: Verdict {
                nova_resizes: resizes,
                nova_refusal: refusal.map(str::to_string),
                grown: resizes,
                disk_only: false,
                notes: Vec::new(),
                nova: String::new(),
                vhdkit: String::new(),
            },
            written: None,
        }
    }

    const MIB_BYTES: u64 = 1 << 20;

    #[test]
    fn expand_verdicts_become_lines() {
        let mut f = facts();
        f.auto_disk_config = Some("True".into());
        let ok = |_: u64| Ok(expand_report(None, true));
        let r = check_flavor(
            &f,
            &Flavor::parse("m:1024:2").unwrap(),
            &FlavorOptions::default(),
            &ok,
        );
        let l = r
            .lines
            .iter()
            .find(|l| l.code == "AUTO_DISK_CONFIG_EXPAND")
            .unwrap();
        assert_eq!(l.status, Status::Pass);
        assert!(
            l.message.contains("partition 1 2146435072 bytes"),
            "{}",
            l.message
        );
        assert!(
            l.message.contains("ext4 1072693248 -> 2146435072 bytes"),
            "{}",
            l.message
        );
        assert!(r.expand.is_some());

        let refused = |_: u64| {
            Ok(expand_report(
                Some("Server disk was unable to be resized because: Disk must have only one partition."),
                false,
            ))
        };
        let r = check_flavor(
            &f,
            &Flavor::parse("m:1024:2").unwrap(),
            &FlavorOptions::default(),
            &refused,
        );
        let l = r
            .lines
            .iter()
            .find(|l| l.code == "AUTO_DISK_CONFIG_EXPAND")
            .unwrap();
        assert_eq!(l.status, Status::Fail);
        assert!(l.message.ends_with("Disk must have only one partition."));

        // auto_disk_config False and no request: no simulation at all.
        f.auto_disk_config = Some("False".into());
        let r = check_flavor(
            &f,
            &Flavor::parse("m:1024:2").unwrap(),
            &FlavorOptions::default(),
            &refused,
        );
        assert!(r.expand.is_none());
        assert!(!r.lines.iter().any(|l| l.code == "AUTO_DISK_CONFIG_EXPAND"));
    }

    #[test]
    fn hypervisor_version_requires_against_the_host() {
        let mut f = facts();
        f.hypervisor_version_requires = Some(">=6.2".into());
        let on = |f: &ImageFacts, host: &str| {
            let opts = FlavorOptions {
                hypervisor_version: Some(host.into()),
                ..Default::default()
            };
            run(f, "m:1024:2", &opts)
                .lines
                .into_iter()
                .find(|l| l.code == "HYPERVISOR_VERSION")
                .unwrap()
                .status
        };
        assert_eq!(on(&f, "6.2.0"), Status::Pass);
        assert_eq!(on(&f, "6.1.0"), Status::Fail);
        f.hypervisor_version_requires = Some("6.2".into());
        assert_eq!(on(&f, "6.2.0"), Status::Fail);
    }
}
