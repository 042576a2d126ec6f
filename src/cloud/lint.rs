//! Property lint: the `--property KEY=VALUE` list, `--name`, `--min-ram` and
//! `--min-disk` as Glance v2 and Nova would see them. Glance's rules (string
//! values, key length, the property quota, read-only and reserved keys) and
//! Nova's readings (`auto_disk_config`, `hypervisor_version_requires`) are
//! small named rules, each a PASS/WARN/FAIL [`Line`]. Pure: no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::flavor::{AutoDiskConfig, VersionRequirement, FALSE_STRINGS, TRUE_STRINGS};
use super::{Line, Status};

/// Glance's limit on a property name (its schema's `maxLength`).
pub const MAX_KEY_CHARS: usize = 255;
/// Glance's `image_property_quota` default.
pub const MAX_PROPERTIES: usize = 128;
/// Glance stores values in a TEXT column.
pub const MAX_VALUE_BYTES: usize = 65_535;

/// Keys Glance sets itself or refuses on create and update.
pub const RESERVED_KEYS: [&str; 17] = [
    "id",
    "status",
    "checksum",
    "size",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "created_at",
    "updated_at",
    "direct_url",
    "self",
    "file",
    "schema",
    "location",
    "locations",
    "deleted",
    "deleted_at",
];
/// Glance reserves every key under this prefix for itself.
pub const RESERVED_PREFIX: &str = "os_glance";

/// Glance v2 visibilities.
pub const VISIBILITIES: [&str; 4] = ["public", "private", "shared", "community"];

/// The base (non-property) fields the command line sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BaseFields {
    pub name: Option<String>,
    pub min_ram: Option<u64>,
    pub min_disk: Option<u64>,
    pub visibility: Option<String>,
    pub protected: Option<bool>,
    pub os_hidden: Option<bool>,
}

/// The lint's findings and what is left to send.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lint {
    pub lines: Vec<Line>,
    #[serde(skip)]
    pub fields: BaseFields,
    /// Custom properties, by key (the last of duplicates wins, as in Glance).
    #[serde(skip)]
    pub properties: BTreeMap<String, String>,
}

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub struct LintInput<'a> {
    pub name: Option<&'a str>,
    pub min_ram: Option<&'a str>,
    pub min_disk: Option<&'a str>,
    pub properties: &'a [(String, String)],
}

/// Splits `KEY=VALUE` at the first `=`, as `openstack --property` does.
pub fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("--property {text:?}: expected KEY=VALUE"))
}

/// Runs every rule.
pub fn lint(input: &LintInput<'_>) -> Lint {
    let mut out = Lint::default();
    out.fields.name = input.name.map(str::to_string);
    if let Some(v) = input.min_ram {
        out.fields.min_ram = non_negative(&mut out.lines, "min_ram", "MiB", v);
    }
    if let Some(v) = input.min_disk {
        out.fields.min_disk = non_negative(&mut out.lines, "min_disk", "GiB", v);
    }
    for (key, value) in input.properties {
        property(&mut out, key, value);
    }
    if out.properties.len() > MAX_PROPERTIES {
        out.lines.push(Line::new(
            "PROPERTY_QUOTA",
            Status::Fail,
            format!(
                "{} properties: Glance's image_property_quota allows {MAX_PROPERTIES} (413 Request Entity Too Large)",
                out.properties.len()
            ),
        ));
    }
    if let Some(v) = out.properties.get("auto_disk_config").cloned() {
        out.lines.push(auto_disk_config(&v));
    }
    if let Some(v) = out.properties.get("hypervisor_version_requires").cloned() {
        out.lines.push(match VersionRequirement::parse(&v) {
            Ok(r) => Line::new(
                "HYPERVISOR_VERSION_REQUIRES",
                Status::Pass,
                format!("hypervisor_version_requires: {r}"),
            ),
            Err(e) if v.is_empty() => Line::new(
                "HYPERVISOR_VERSION_REQUIRES",
                Status::Warn,
                format!("hypervisor_version_requires is empty: the scheduler ignores it ({e})"),
            ),
            Err(e) => Line::new(
                "HYPERVISOR_VERSION_REQUIRES",
                Status::Fail,
                format!(
                    "hypervisor_version_requires {v:?}: {e} (Nova's grammar: comma-separated clauses (<=|>=|<|>|!=|==) VERSION, e.g. \">=6.2\")"
                ),
            ),
        });
    }
    if let Some(v) = out.properties.get("vm_mode") {
        if !["hvm", "xen", "uml", "exe"].contains(&v.as_str()) {
            out.lines.push(Line::new(
                "VM_MODE",
                Status::Warn,
                format!("vm_mode {v:?}: Nova knows hvm, xen, uml and exe"),
            ));
        }
    }
    if let Some(v) = out.properties.get("os_type") {
        if !["linux", "windows"].contains(&v.as_str()) {
            out.lines.push(Line::new(
                "OS_TYPE",
                Status::Warn,
                format!("os_type {v:?}: the XenAPI driver only tells \"windows\" from the rest (usual values: linux, windows)"),
            ));
        }
    }
    out
}

fn non_negative(lines: &mut Vec<Line>, key: &str, unit: &str, v: &str) -> Option<u64> {
    match v.trim().parse::<u64>() {
        Ok(n) if v.trim() == v => Some(n),
        _ => {
            lines.push(Line::new(
                "MIN_FIELD",
                Status::Fail,
                format!("{key} {v:?}: Glance wants a non-negative integer ({unit})"),
            ));
            None
        }
    }
}

fn bool_field(lines: &mut Vec<Line>, key: &str, v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            lines.push(Line::new(
                "BOOLEAN_FIELD",
                Status::Fail,
                format!("{key} {v:?}: Glance wants a boolean (true or false)"),
            ));
            None
        }
    }
}

/// One `--property`.
fn property(out: &mut Lint, key: &str, value: &str) {
    let lines = &mut out.lines;
    if key.is_empty() {
        lines.push(Line::new(
            "PROPERTY_KEY",
            Status::Fail,
            "empty property name".to_string(),
        ));
        return;
    }
    let chars = key.chars().count();
    if chars > MAX_KEY_CHARS {
        lines.push(Line::new(
            "PROPERTY_KEY",
            Status::Fail,
            format!("property name of {chars} characters: Glance allows {MAX_KEY_CHARS}"),
        ));
        return;
    }
    if value.len() > MAX_VALUE_BYTES {
        lines.push(Line::new(
            "PROPERTY_VALUE",
            Status::Fail,
            format!(
                "{key}: value of {} bytes: Glance stores at most {MAX_VALUE_BYTES}",
                value.len()
            ),
        ));
        return;
    }
    if RESERVED_KEYS.contains(&key) || key.starts_with(RESERVED_PREFIX) {
        lines.push(Line::new(
            "PROPERTY_RESERVED",
            Status::Fail,
            format!(
                "{key}: read-only or reserved in Glance (403 Forbidden); Glance sets it itself"
            ),
        ));
        return;
    }
    match key {
        "owner" => lines.push(Line::new(
            "PROPERTY_OWNER",
            Status::Warn,
            "owner: the cloud sets it from your project; leave it out".to_string(),
        )),
        "name" => out.fields.name = Some(value.to_string()),
        "min_ram" => out.fields.min_ram = non_negative(lines, "min_ram", "MiB", value),
        "min_disk" => out.fields.min_disk = non_negative(lines, "min_disk", "GiB", value),
        "protected" => out.fields.protected = bool_field(lines, "protected", value),
        "os_hidden" => out.fields.os_hidden = bool_field(lines, "os_hidden", value),
        "visibility" => {
            if VISIBILITIES.contains(&value) {
                out.fields.visibility = Some(value.to_string());
            } else {
                lines.push(Line::new(
                    "VISIBILITY",
                    Status::Fail,
                    format!("visibility {value:?}: Glance wants one of public, private, shared, community"),
                ));
            }
        }
        "disk_format" | "container_format" => lines.push(Line::new(
            "PROPERTY_FORMAT",
            Status::Fail,
            format!("{key}: set by preflight from the image (vhd; bare or ovf), not a property"),
        )),
        "tags" => lines.push(Line::new(
            "PROPERTY_TAGS",
            Status::Fail,
            "tags: a list in Glance v2, not a string property (use openstack image create --tag)"
                .to_string(),
        )),
        _ => {
            if out
                .properties
                .insert(key.to_string(), value.to_string())
                .is_some()
            {
                lines.push(Line::new(
                    "PROPERTY_DUPLICATE",
                    Status::Warn,
                    format!("{key} given more than once: the last value is kept"),
                ));
            }
        }
    }
}

/// `auto_disk_config` as Nova reads it.
fn auto_disk_config(v: &str) -> Line {
    match AutoDiskConfig::parse_strict(v) {
        Some(AutoDiskConfig::Disabled) => Line::new(
            "AUTO_DISK_CONFIG",
            Status::Pass,
            format!("auto_disk_config {v:?}: disabled (a request for automatic disk config is refused)"),
        ),
        Some(AutoDiskConfig::True) => Line::new(
            "AUTO_DISK_CONFIG",
            Status::Pass,
            format!("auto_disk_config {v:?}: True (the hypervisor grows partition 1 and its filesystem)"),
        ),
        Some(AutoDiskConfig::False) => Line::new(
            "AUTO_DISK_CONFIG",
            Status::Pass,
            format!("auto_disk_config {v:?}: False"),
        ),
        None => Line::new(
            "AUTO_DISK_CONFIG",
            Status::Fail,
            format!(
                "auto_disk_config {v:?}: not True, False or disabled; Nova's bool_from_string silently reads it as False (it knows {} / {} and \"disabled\")",
                TRUE_STRINGS.join(", "),
                FALSE_STRINGS.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(list: &[(&str, &str)]) -> Lint {
        let p = props(list);
        lint(&LintInput {
            properties: &p,
            ..Default::default()
        })
    }

    fn statuses(l: &Lint, code: &str) -> Vec<Status> {
        l.lines
            .iter()
            .filter(|x| x.code == code)
            .map(|x| x.status)
            .collect()
    }

    #[test]
    fn properties_parse_at_the_first_equals() {
        assert_eq!(
            parse_property("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(parse_property("a=").unwrap(), ("a".into(), "".into()));
        assert!(parse_property("a").is_err());
    }

    #[test]
    fn clean_properties_pass() {
        let l = run(&[
            ("auto_disk_config", "True"),
            ("hypervisor_version_requires", ">=6.2"),
            ("os_type", "linux"),
            ("vm_mode", "hvm"),
            ("com.example__1__release_id", "42"),
            ("visibility", "private"),
        ]);
        assert!(
            l.lines.iter().all(|x| x.status == Status::Pass),
            "{:?}",
            l.lines
        );
        assert_eq!(l.properties.len(), 5);
        assert_eq!(l.fields.visibility.as_deref(), Some("private"));
    }

    #[test]
    fn key_too_long() {
        let long = "k".repeat(256);
        let l = run(&[(&long, "v")]);
        assert_eq!(statuses(&l, "PROPERTY_KEY"), [Status::Fail]);
        let ok = "k".repeat(255);
        assert!(run(&[(&ok, "v")]).lines.is_empty());
    }

    #[test]
    fn empty_key() {
        assert_eq!(statuses(&run(&[("", "v")]), "PROPERTY_KEY"), [Status::Fail]);
    }

    #[test]
    fn value_too_long() {
        let big = "v".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            statuses(&run(&[("k", &big)]), "PROPERTY_VALUE"),
            [Status::Fail]
        );
    }

    #[test]
    fn too_many_properties() {
        let keys: Vec<String> = (0..=MAX_PROPERTIES).map(|i| format!("k{i}")).collect();
        let list: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(statuses(&run(&list), "PROPERTY_QUOTA"), [Status::Fail]);
        assert!(run(&list[..MAX_PROPERTIES]).lines.is_empty());
    }

    #[test]
    fn every_reserved_key_is_refused() {
        for k in RESERVED_KEYS
            .iter()
            .chain(&["os_glance_importing_to_stores"])
        {
            let l = run(&[(k, "x")]);
            assert_eq!(statuses(&l, "PROPERTY_RESERVED"), [Status::Fail], "{k}");
            assert!(l.properties.is_empty());
        }
    }

    #[test]
    fn owner_is_warned() {
        assert_eq!(
            statuses(&run(&[("owner", "me")]), "PROPERTY_OWNER"),
            [Status::Warn]
        );
    }

    #[test]
    fn duplicates_are_warned() {
        let l = run(&[("a", "1"), ("a", "2")]);
        assert_eq!(statuses(&l, "PROPERTY_DUPLICATE"), [Status::Warn]);
        assert_eq!(l.properties["a"], "2");
    }

    #[test]
    fn auto_disk_config_values() {
        for ok in ["True", "False", "disabled", "yes", "0", " DISABLED "] {
            assert_eq!(
                statuses(&run(&[("auto_disk_config", ok)]), "AUTO_DISK_CONFIG"),
                [Status::Pass],
                "{ok}"
            );
        }
        for bad in ["maybe", "", "enabled"] {
            assert_eq!(
                statuses(&run(&[("auto_disk_config", bad)]), "AUTO_DISK_CONFIG"),
                [Status::Fail],
                "{bad}"
            );
        }
    }

    #[test]
    fn hypervisor_version_requires_grammar() {
        let st = |v: &str| {
            statuses(
                &run(&[("hypervisor_version_requires", v)]),
                "HYPERVISOR_VERSION_REQUIRES",
            )
        };
        assert_eq!(st(">=6.2"), [Status::Pass]);
        assert_eq!(st(">=6.2,<7.0"), [Status::Pass]);
        assert_eq!(st("6.2"), [Status::Fail]);
        assert_eq!(st("~=6.2"), [Status::Fail]);
        assert_eq!(st(""), [Status::Warn]);
        let l = run(&[("hypervisor_version_requires", "6.2")]);
        assert!(l.lines[0]
            .message
            .contains("bad package restriction syntax: '6.2'"));
    }

    #[test]
    fn min_fields_are_non_negative_integers() {
        let p = props(&[("min_ram", "-1")]);
        let l = lint(&LintInput {
            min_disk: Some("1.5"),
            properties: &p,
            ..Default::default()
        });
        assert_eq!(statuses(&l, "MIN_FIELD"), [Status::Fail, Status::Fail]);
        let l = lint(&LintInput {
            min_ram: Some("512"),
            min_disk: Some("0"),
            ..Default::default()
        });
        assert!(l.lines.is_empty());
        assert_eq!(l.fields.min_ram, Some(512));
        assert_eq!(l.fields.min_disk, Some(0));
    }

    #[test]
    fn visibility_values() {
        for v in VISIBILITIES {
            assert!(run(&[("visibility", v)]).lines.is_empty());
        }
        assert_eq!(
            statuses(&run(&[("visibility", "Public")]), "VISIBILITY"),
            [Status::Fail]
        );
    }

    #[test]
    fn base_keys_as_properties() {
        let l = run(&[
            ("protected", "maybe"),
            ("tags", "a"),
            ("disk_format", "raw"),
        ]);
        assert_eq!(statuses(&l, "BOOLEAN_FIELD"), [Status::Fail]);
        assert_eq!(statuses(&l, "PROPERTY_TAGS"), [Status::Fail]);
        assert_eq!(statuses(&l, "PROPERTY_FORMAT"), [Status::Fail]);
        let l = run(&[("name", "n"), ("protected", "true")]);
        assert_eq!(l.fields.name.as_deref(), Some("n"));
        assert_eq!(l.fields.protected, Some(true));
    }

    #[test]
    fn vm_mode_and_os_type_are_warned_when_unknown() {
        assert_eq!(
            statuses(&run(&[("vm_mode", "pv")]), "VM_MODE"),
            [Status::Warn]
        );
        assert_eq!(
            statuses(&run(&[("os_type", "bsd")]), "OS_TYPE"),
            [Status::Warn]
        );
    }
}
