//! The image record Glance v2 would hold after the upload (field names as
//! Glance's), the body of the create request that makes it, and the
//! equivalent `openstack image create` command line. Pure: no I/O.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::flavor::GIB;
use super::lint::BaseFields;
use super::{Line, Status};
use crate::format::footer::{qemu_size, qemu_uses_chs};
use crate::format::Footer;
use crate::pipeline::digest::Digests;

/// Glance's `disk_format` for every image preflight looks at.
pub const DISK_FORMAT: &str = "vhd";
/// Glance's default `os_hash_algo`.
pub const OS_HASH_ALGO: &str = "sha512";

/// The virtual size each consumer reads from the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VirtualSizes {
    /// Glance's format inspector: original size.
    pub glance: u64,
    /// qemu 10: C×H×S for `vpc `/`qemu` creators, else current size.
    pub qemu: u64,
    /// `chs` or `current_size`: which rule qemu applies.
    pub qemu_rule: &'static str,
    /// Hyper-V and the specification: current size.
    pub hyperv: u64,
    /// XenServer (blktap): current size.
    pub xenserver: u64,
    /// Whether any two differ.
    pub differ: bool,
}

impl VirtualSizes {
    /// The sizes a footer gives each consumer.
    pub fn from_footer(f: &Footer) -> VirtualSizes {
        let qemu = qemu_size(f);
        VirtualSizes {
            glance: f.original_size,
            qemu,
            qemu_rule: if qemu_uses_chs(f) {
                "chs"
            } else {
                "current_size"
            },
            hyperv: f.current_size,
            xenserver: f.current_size,
            differ: f.original_size != f.current_size || qemu != f.current_size,
        }
    }

    /// The largest size any consumer sees (what `min_disk` must cover).
    pub fn largest(&self) -> u64 {
        self.glance.max(self.qemu).max(self.hyperv)
    }
}

/// The image as Glance would hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ImageRecord {
    /// The image name.
    pub name: String,
    /// Always `vhd`.
    pub disk_format: &'static str,
    /// `bare`, or `ovf` for a XenServer tarball.
    pub container_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// `public`, `private`, `shared` or `community`, when given.
    pub visibility: Option<String>,
    /// Protected from deletion.
    pub protected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Hidden from image lists, when given.
    pub os_hidden: Option<bool>,
    /// GiB.
    pub min_disk: u64,
    /// MiB.
    pub min_ram: u64,
    /// MD5 hex of the uploaded bytes.
    pub checksum: Option<String>,
    /// Always `sha512`.
    pub os_hash_algo: &'static str,
    /// SHA-512 hex of the uploaded bytes.
    pub os_hash_value: Option<String>,
    /// Bytes uploaded.
    pub size: Option<u64>,
    /// As Glance's inspector records it (the footer's original size).
    pub virtual_size: Option<u64>,
    /// Custom properties: every value a string.
    #[serde(flatten)]
    pub properties: BTreeMap<String, String>,
}

/// What the record is built from.
#[derive(Debug, Clone)]
pub struct RecordInput<'a> {
    pub fields: &'a BaseFields,
    pub properties: &'a BTreeMap<String, String>,
    /// The name when none was given (the file's stem).
    pub default_name: String,
    pub container_format: &'static str,
    /// Digests of the bytes uploaded (none for a chain not yet packaged).
    pub digests: Option<&'a Digests>,
    pub sizes: Option<VirtualSizes>,
    /// Glance's inspector recognises the upload as a VHD (dynamic or
    /// differencing: a footer copy at offset 0).
    pub recognised: bool,
}

/// Builds the record; a `min_disk` below the virtual size is raised (WARN).
pub fn build(input: &RecordInput<'_>) -> (ImageRecord, Vec<Line>) {
    let mut lines = Vec::new();
    let floor = input.sizes.map_or(0, |s| s.largest().div_ceil(GIB));
    let min_disk = match input.fields.min_disk {
        Some(given) if given < floor => {
            lines.push(Line::new(
                "MIN_DISK_RAISED",
                Status::Warn,
                format!("min_disk {given} GiB is below the virtual size ({floor} GiB rounded up): the record uses {floor}"),
            ));
            floor
        }
        Some(given) => given,
        None => floor,
    };
    let record = ImageRecord {
        name: input
            .fields
            .name
            .clone()
            .unwrap_or_else(|| input.default_name.clone()),
        disk_format: DISK_FORMAT,
        container_format: input.container_format,
        visibility: input.fields.visibility.clone(),
        protected: input.fields.protected.unwrap_or(false),
        os_hidden: input.fields.os_hidden,
        min_disk,
        min_ram: input.fields.min_ram.unwrap_or(0),
        checksum: input.digests.and_then(|d| d.md5.clone()),
        os_hash_algo: OS_HASH_ALGO,
        os_hash_value: input.digests.and_then(|d| d.sha512.clone()),
        size: input.digests.map(|d| d.size),
        // Glance's inspector reads the footer of a VHD it recognises (one
        // with the footer copy at offset 0); it does not look inside a
        // tarball, and a fixed VHD or raw file is refused before a record.
        virtual_size: if input.recognised && input.container_format == "bare" {
            input.sizes.map(|s| s.glance)
        } else {
            None
        },
        properties: input.properties.clone(),
    };
    (record, lines)
}

impl ImageRecord {
    /// The body of `POST /v2/images`: writable fields and the properties.
    pub fn create_request(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("disk_format".into(), self.disk_format.into());
        m.insert("container_format".into(), self.container_format.into());
        m.insert("min_disk".into(), self.min_disk.into());
        m.insert("min_ram".into(), self.min_ram.into());
        if let Some(v) = &self.visibility {
            m.insert("visibility".into(), v.clone().into());
        }
        if self.protected {
            m.insert("protected".into(), true.into());
        }
        if let Some(h) = self.os_hidden {
            m.insert("os_hidden".into(), h.into());
        }
        for (k, v) in &self.properties {
            m.insert(k.clone(), v.clone().into());
        }
        serde_json::Value::Object(m)
    }

    /// `openstack image create … --file FILE NAME`, shell-quoted.
    pub fn command_line(&self, file: Option<&Path>) -> String {
        let mut words: Vec<String> = [
            "openstack",
            "image",
            "create",
            "--disk-format",
            self.disk_format,
            "--container-format",
            self.container_format,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        words.push("--min-disk".into());
        words.push(self.min_disk.to_string());
        words.push("--min-ram".into());
        words.push(self.min_ram.to_string());
        if let Some(v) = &self.visibility {
            words.push(format!("--{v}"));
        }
        if self.protected {
            words.push("--protected".into());
        }
        match self.os_hidden {
            Some(true) => words.push("--hidden".into()),
            Some(false) => words.push("--unhidden".into()),
            None => {}
        }
        for (k, v) in &self.properties {
            words.push("--property".into());
            words.push(shell_quote(&format!("{k}={v}")));
        }
        if let Some(f) = file {
            words.push("--file".into());
            words.push(shell_quote(&f.to_string_lossy()));
        }
        words.push(shell_quote(&self.name));
        words.join(" ")
    }
}

/// Quotes a word for a POSIX shell: as is when it holds only safe
/// characters, else in single quotes (a `'` becomes `'\''`).
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-.,/:=+@%".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc-1.2"), "abc-1.2");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(">=6.2"), "'>=6.2'");
    }

    fn input<'a>(
        fields: &'a BaseFields,
        props: &'a BTreeMap<String, String>,
        d: &'a Digests,
    ) -> RecordInput<'a> {
        RecordInput {
            fields,
            properties: props,
            default_name: "disk".into(),
            container_format: "bare",
            digests: Some(d),
            sizes: Some(VirtualSizes {
                glance: GIB + 1,
                qemu: GIB + 1,
                qemu_rule: "current_size",
                hyperv: GIB + 1,
                xenserver: GIB + 1,
                differ: false,
            }),
            recognised: true,
        }
    }

    #[test]
    fn min_disk_covers_the_virtual_size() {
        let d = Digests::default();
        let props = BTreeMap::new();
        let mut fields = BaseFields::default();
        let (r, lines) = build(&input(&fields, &props, &d));
        assert_eq!(r.min_disk, 2);
        assert!(lines.is_empty());
        fields.min_disk = Some(1);
        let (r, lines) = build(&input(&fields, &props, &d));
        assert_eq!(r.min_disk, 2);
        assert_eq!(lines[0].code, "MIN_DISK_RAISED");
        fields.min_disk = Some(10);
        assert_eq!(build(&input(&fields, &props, &d)).0.min_disk, 10);
    }

    #[test]
    fn record_json_and_command_line() {
        let d = Digests {
            md5: Some("m".into()),
            sha512: Some("s".into()),
            crc32: None,
            size: 7,
        };
        let mut props = BTreeMap::new();
        props.insert("hypervisor_version_requires".into(), ">=6.2".into());
        props.insert("com.example__1__release_id".into(), "it's 1".into());
        let fields = BaseFields {
            name: Some("My image".into()),
            visibility: Some("private".into()),
            min_ram: Some(512),
            ..Default::default()
        };
        let (r, _) = build(&input(&fields, &props, &d));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["checksum"], "m");
        assert_eq!(v["os_hash_algo"], "sha512");
        assert_eq!(v["os_hash_value"], "s");
        assert_eq!(v["size"], 7);
        assert_eq!(v["virtual_size"], GIB + 1);
        assert_eq!(v["hypervisor_version_requires"], ">=6.2");
        let req = r.create_request();
        assert!(req.get("checksum").is_none());
        assert_eq!(req["min_ram"], 512);
        assert_eq!(req["com.example__1__release_id"], "it's 1");
        assert_eq!(
            r.command_line(Some(Path::new("/tmp/a b.vhd"))),
            "openstack image create --disk-format vhd --container-format bare --min-disk 2 --min-ram 512 --private --property 'com.example__1__release_id=it'\\''s 1' --property 'hypervisor_version_requires=>=6.2' --file '/tmp/a b.vhd' 'My image'"
        );
    }
}
