//! `vhdkit catalog`: the local image registry (see [`crate::catalog`]).
//! This file holds the arguments, runs one subcommand into one report value,
//! and renders that value as text; the binary prints it as text or JSON and
//! the exit status follows from the same value (0 done, 1 refused or
//! problems found, 2 could not run).

use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::add::{AddOptions, AddReport};
use crate::catalog::edit::{SetReport, StatusReport};
use crate::catalog::export::{ExportOptions, ExportReport};
use crate::catalog::query::{Filter, Sort};
use crate::catalog::status::{Action, ImageStatus};
use crate::catalog::verify::{DataState, VerifyReport};
use crate::catalog::{Catalog, Entry, Image};
use crate::cloud::targets::Target;
use crate::cloud::{Line, Status};
use crate::error::{EXIT_OK, EXIT_PROBLEMS};
use crate::pipeline::NoProgress;
use crate::report::{Bar, Outcome};
use crate::Result;

/// A local image registry (SQLite): add images with Glance's record, find
/// them by property, export them ready to upload.
///
/// Exit status: 0 done, 1 refused, nothing found, data mismatch or not
/// ready for the target, 2 could not run (e.g. not a catalog).
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Args {
    /// The catalog database [default: $VHDKIT_CATALOG, else
    /// $XDG_DATA_HOME/vhdkit/catalog.db]; the store folder is beside it.
    #[cfg_attr(feature = "cli", arg(long, global = true, value_name = "PATH"))]
    pub catalog: Option<PathBuf>,
    /// Print JSON (also for refusals and errors).
    #[cfg_attr(feature = "cli", arg(long, global = true))]
    pub json: bool,
    /// No progress bar while an image is read.
    #[cfg_attr(feature = "cli", arg(long, short, global = true))]
    pub quiet: bool,
    #[cfg_attr(feature = "cli", command(subcommand))]
    pub command: CatalogCommand,
}

/// The catalog's subcommands.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Subcommand))]
pub enum CatalogCommand {
    /// Add an image: checked as preflight checks it for Glance, digested in
    /// one read, stored by its SHA-512 (or only referenced).
    Add(AddArgs),
    /// List images: id, name, status, size, virtual size, created, and the
    /// properties filtered on.
    List(ListArgs),
    /// Print the ids of the active images with every property KEY=VALUE,
    /// newest first. Exit status 1 when none matches.
    Find(FindArgs),
    /// Show one image's full record, its properties and its stored file.
    Show {
        /// Image id, or a name only one image has.
        image: String,
    },
    /// Set or remove properties (and name, visibility, protected, min_ram,
    /// min_disk, owner); the data and the fields Glance derives from it
    /// never change.
    Set(SetArgs),
    /// Read stored images again and compare MD5 and SHA-512 with the record;
    /// a mismatch marks the image killed (exit status 1).
    Verify(VerifyArgs),
    /// Deactivate an active image (it can no longer be exported).
    Deactivate {
        /// Image id or name.
        image: String,
    },
    /// Reactivate a deactivated image.
    Reactivate {
        /// Image id or name.
        image: String,
    },
    /// Delete an image (not a protected one); its stored data goes with the
    /// last image using it.
    Delete {
        /// Image id or name.
        image: String,
    },
    /// The preflight report for a target from the stored record, the
    /// `POST /v2/images` body and the `openstack image create` line.
    Export(ExportArgs),
}

/// `catalog add`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct AddArgs {
    /// The image file (read only).
    pub image: PathBuf,
    /// The image name [default: the file name without its extension].
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// An image property KEY=VALUE (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "property", value_name = "KEY=VALUE", value_parser = crate::cloud::lint::parse_property))]
    pub properties: Vec<(String, String)>,
    /// The owner (project) recorded.
    #[cfg_attr(feature = "cli", arg(long))]
    pub owner: Option<String>,
    /// Glance visibility [default: shared].
    #[cfg_attr(feature = "cli", arg(long, value_parser = ["private", "shared", "community", "public"]))]
    pub visibility: Option<String>,
    /// min_ram in MiB.
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "MB", allow_hyphen_values = true)
    )]
    pub min_ram: Option<String>,
    /// min_disk in GiB (raised to the virtual size if below it).
    #[cfg_attr(
        feature = "cli",
        arg(long, value_name = "GB", allow_hyphen_values = true)
    )]
    pub min_disk: Option<String>,
    /// Protect the image from deletion.
    #[cfg_attr(feature = "cli", arg(long))]
    pub protected: bool,
    /// Keep only the path, not a copy; the file is verified by digest
    /// whenever it is used.
    #[cfg_attr(feature = "cli", arg(long))]
    pub reference: bool,
    /// Catalogue an image that preflight FAILs for Glance (damaged, not a
    /// dynamic VHD).
    #[cfg_attr(feature = "cli", arg(long))]
    pub force: bool,
}

/// `catalog list`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ListArgs {
    /// Only images with this property KEY=VALUE (repeatable; all must match).
    #[cfg_attr(feature = "cli", arg(long = "property", value_name = "KEY=VALUE", value_parser = crate::cloud::lint::parse_property))]
    pub properties: Vec<(String, String)>,
    /// Only images with this name.
    #[cfg_attr(feature = "cli", arg(long))]
    pub name: Option<String>,
    /// Only images in this status.
    #[cfg_attr(feature = "cli", arg(long, value_parser = ImageStatus::parse))]
    pub status: Option<ImageStatus>,
    /// Only images of this owner.
    #[cfg_attr(feature = "cli", arg(long))]
    pub owner: Option<String>,
    /// Order: KEY[:asc|desc], KEY one of created_at, updated_at, name,
    /// status, size, virtual_size, min_disk, min_ram, id, owner.
    #[cfg_attr(feature = "cli", arg(long, value_parser = Sort::parse, default_value = "created_at:desc"))]
    pub sort: Sort,
    /// At most N images.
    #[cfg_attr(feature = "cli", arg(long, value_name = "N"))]
    pub limit: Option<u64>,
}

/// `catalog find`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct FindArgs {
    /// KEY=VALUE properties, all of which must match.
    #[cfg_attr(feature = "cli", arg(value_name = "KEY=VALUE", required = true, value_parser = crate::cloud::lint::parse_property))]
    pub properties: Vec<(String, String)>,
    /// Only the newest match.
    #[cfg_attr(feature = "cli", arg(long))]
    pub latest: bool,
}

/// `catalog set`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct SetArgs {
    /// Image id or name.
    pub image: String,
    /// Set KEY=VALUE (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "property", value_name = "KEY=VALUE", value_parser = crate::cloud::lint::parse_property))]
    pub properties: Vec<(String, String)>,
    /// Remove property KEY (repeatable).
    #[cfg_attr(feature = "cli", arg(long = "remove-property", value_name = "KEY"))]
    pub remove: Vec<String>,
}

/// `catalog verify`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct VerifyArgs {
    /// Image ids or names [default: every image].
    pub images: Vec<String>,
    /// Also remove what killed adds left: their records, temporary files
    /// and store files no image uses.
    #[cfg_attr(feature = "cli", arg(long))]
    pub fix: bool,
}

/// `catalog export`.
#[derive(Debug)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ExportArgs {
    /// Image id or name.
    pub image: String,
    /// Where it goes: glance, rackspace, xenserver or azure.
    #[cfg_attr(feature = "cli", arg(long, default_value = "glance", value_parser = Target::parse))]
    pub target: Target,
    /// Read the stored data again and compare it with the record first.
    #[cfg_attr(feature = "cli", arg(long))]
    pub reread: bool,
}

/// `list`'s answer: the images and the property columns asked for.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    pub images: Vec<Image>,
    #[serde(skip)]
    pub columns: Vec<String>,
}

/// `find`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    pub ids: Vec<String>,
}

/// One subcommand's result: rendered as text or JSON, and the exit status.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Add(Box<AddReport>),
    List(ListReport),
    Find(FindReport),
    Show(Box<Entry>),
    Set(Box<SetReport>),
    Status(StatusReport),
    Verify(VerifyReport),
    Export(Box<ExportReport>),
}

/// `vhdkit catalog`: one subcommand, its report, the exit status.
pub fn run(args: Args) -> Result<Outcome> {
    let report = execute(args)?;
    let status = report.exit_status();
    Outcome::new(&report, Report::to_text, status)
}

fn execute(args: Args) -> Result<Report> {
    let path = Catalog::resolve_path(args.catalog.as_deref())?;
    let mut cat = Catalog::open(&path)?;
    Ok(match args.command {
        CatalogCommand::Add(a) => {
            let opts = AddOptions {
                name: a.name,
                properties: a.properties,
                owner: a.owner,
                visibility: a.visibility,
                min_ram: a.min_ram,
                min_disk: a.min_disk,
                protected: a.protected,
                reference: a.reference,
                force: a.force,
            };
            let bar = Bar::for_file(&a.image, args.quiet);
            let report = cat.add(&a.image, &opts, &bar);
            drop(bar);
            Report::Add(Box::new(report?))
        }
        CatalogCommand::List(a) => {
            let columns = a.properties.iter().map(|(k, _)| k.clone()).collect();
            let filter = Filter {
                properties: a.properties,
                name: a.name,
                status: a.status,
                owner: a.owner,
                sort: a.sort,
                limit: a.limit,
            };
            let images = cat.list(&filter)?.into_iter().map(|e| e.image).collect();
            Report::List(ListReport { images, columns })
        }
        CatalogCommand::Find(a) => Report::Find(FindReport {
            ids: cat.find(&a.properties, a.latest)?,
        }),
        CatalogCommand::Show { image } => Report::Show(Box::new(cat.get(&image)?)),
        CatalogCommand::Set(a) => {
            if a.properties.is_empty() && a.remove.is_empty() {
                return Err(crate::Error::Usage(
                    "catalog set: give --property KEY=VALUE or --remove-property KEY".into(),
                ));
            }
            Report::Set(Box::new(cat.set(&a.image, &a.properties, &a.remove)?))
        }
        CatalogCommand::Verify(a) => Report::Verify(cat.verify(&a.images, a.fix, &NoProgress)?),
        CatalogCommand::Deactivate { image } => {
            Report::Status(cat.change_status(&image, Action::Deactivate)?)
        }
        CatalogCommand::Reactivate { image } => {
            Report::Status(cat.change_status(&image, Action::Reactivate)?)
        }
        CatalogCommand::Delete { image } => Report::Status(cat.delete(&image)?),
        CatalogCommand::Export(a) => {
            let opts = ExportOptions {
                target: a.target,
                reread: a.reread,
            };
            Report::Export(Box::new(cat.export(&a.image, opts, &NoProgress)?))
        }
    })
}

impl Report {
    /// 0 done; 1 nothing found, data mismatch, or not ready for the target.
    pub fn exit_status(&self) -> u8 {
        let problem = match self {
            Report::Find(f) => f.ids.is_empty(),
            Report::Verify(v) => !v.ok,
            Report::Export(e) => !e.verdict.ready,
            _ => false,
        };
        if problem {
            EXIT_PROBLEMS
        } else {
            EXIT_OK
        }
    }

    /// The human rendering of the same value `--json` prints.
    pub fn to_text(&self) -> String {
        match self {
            Report::Add(r) => add_text(r),
            Report::List(r) => list_text(r),
            Report::Find(r) => r.ids.iter().map(|id| format!("{id}\n")).collect(),
            Report::Show(e) => show_text(e),
            Report::Set(r) => {
                let mut out = show_text(&r.entry);
                out.push_str(&lines_text(&r.lines, false));
                out
            }
            Report::Status(r) => match (r.after, &r.removed_data) {
                (None, Some(p)) => format!(
                    "{} ({}): deleted; stored data {} removed\n",
                    r.id,
                    r.name,
                    p.display()
                ),
                (None, None) => format!("{} ({}): deleted\n", r.id, r.name),
                (Some(after), _) => {
                    format!(
                        "{} ({}): {} -> {}\n",
                        r.id,
                        r.name,
                        r.before.name(),
                        after.name()
                    )
                }
            },
            Report::Verify(r) => verify_text(r),
            Report::Export(r) => export_text(r),
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".into(), |v| v.to_string())
}

/// PASS lines hidden unless `all`.
fn lines_text(lines: &[Line], all: bool) -> String {
    lines
        .iter()
        .filter(|l| all || l.status != Status::Pass)
        .map(|l| {
            let fix = l
                .fix
                .as_ref()
                .map_or_else(String::new, |f| format!("\n        fix: {f}"));
            format!(
                "  {:<4}  {:<28} {}{fix}\n",
                l.status.name(),
                l.code,
                l.message
            )
        })
        .collect()
}

fn add_text(r: &AddReport) -> String {
    let i = &r.entry.image;
    let mut out = String::new();
    for id in &r.cleaned {
        out.push_str(&format!("removed the record of an interrupted add: {id}\n"));
    }
    out.push_str(&format!(
        "{} {}: {}, {} bytes, virtual size {}, md5 {}\n",
        i.id,
        i.name,
        i.status.name(),
        opt(&i.size),
        opt(&i.virtual_size),
        opt(&i.checksum)
    ));
    let how = serde_json::to_value(r.method)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    out.push_str(&format!(
        "  data: {} ({how})\n",
        r.entry
            .store
            .path
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string())
    ));
    if r.entry.store.forced {
        out.push_str("  added with --force over preflight FAILs\n");
    }
    out.push_str(&lines_text(&r.lines, false));
    out
}

fn list_text(r: &ListReport) -> String {
    let mut rows: Vec<Vec<String>> =
        vec![
            ["id", "name", "status", "size", "virtual_size", "created_at"]
                .iter()
                .map(|s| s.to_string())
                .chain(r.columns.iter().cloned())
                .collect(),
        ];
    for i in &r.images {
        let mut row = vec![
            i.id.clone(),
            i.name.clone(),
            i.status.name().to_string(),
            opt(&i.size),
            opt(&i.virtual_size),
            i.created_at.clone(),
        ];
        row.extend(r.columns.iter().map(|c| opt(&i.properties.get(c))));
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}

fn show_text(e: &Entry) -> String {
    let i = &e.image;
    let mut out = String::new();
    let mut field = |k: &str, v: String| out.push_str(&format!("{k:<18} {v}\n"));
    field("id", i.id.clone());
    field("name", i.name.clone());
    field("status", i.status.name().into());
    field("owner", opt(&i.owner));
    field("visibility", i.visibility.clone());
    field("protected", i.protected.to_string());
    field("os_hidden", i.os_hidden.to_string());
    field("disk_format", i.disk_format.clone());
    field("container_format", i.container_format.clone());
    field("min_disk", i.min_disk.to_string());
    field("min_ram", i.min_ram.to_string());
    field("checksum", opt(&i.checksum));
    field("os_hash_algo", i.os_hash_algo.clone());
    field("os_hash_value", opt(&i.os_hash_value));
    field("size", opt(&i.size));
    field("virtual_size", opt(&i.virtual_size));
    field("created_at", i.created_at.clone());
    field("updated_at", i.updated_at.clone());
    for (k, v) in &i.properties {
        field(k, v.clone());
    }
    let s = &e.store;
    let stored = s
        .path
        .as_ref()
        .map_or_else(|| "-".into(), |p| p.display().to_string());
    field(
        "stored",
        format!("{stored}{}", if s.reference { " (reference)" } else { "" }),
    );
    field("source", s.source_path.display().to_string());
    field("disk_type", s.disk_type.clone());
    if s.forced {
        field("forced", "true: added over preflight FAILs".into());
    }
    out
}

fn verify_text(r: &VerifyReport) -> String {
    let mut out = String::new();
    if r.database != ["ok"] {
        out.push_str(&format!("database: {}\n", r.database.join("; ")));
    }
    for c in &r.images {
        let state = serde_json::to_value(c.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let detail = c
            .detail
            .as_ref()
            .map_or_else(String::new, |d| format!(": {d}"));
        let now = match c.state {
            DataState::Mismatch | DataState::Missing => " -> killed",
            _ => "",
        };
        out.push_str(&format!("{} {}: {state}{now}{detail}\n", c.id, c.name));
    }
    let verb = if r.fixed { "removed" } else { "found" };
    for id in &r.interrupted {
        out.push_str(&format!("{verb} the record of an interrupted add: {id}\n"));
    }
    for p in &r.orphans {
        out.push_str(&format!("{verb} unused store file: {}\n", p.display()));
    }
    if !r.fixed && (!r.interrupted.is_empty() || !r.orphans.is_empty()) {
        out.push_str("run `vhdkit catalog verify --fix` to remove them\n");
    }
    out.push_str(if r.ok {
        "verify: ok\n"
    } else {
        "verify: problems found\n"
    });
    out
}

fn export_text(r: &ExportReport) -> String {
    let mut out = format!(
        "export {} for {}: {}\n",
        r.id,
        r.target.name(),
        r.file.display()
    );
    let recorded: Vec<String> = r
        .structure
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["status"] != "PASS")
        .map(|l| {
            format!(
                "  {:<4}  {:<28} {}\n",
                l["status"].as_str().unwrap_or(""),
                l["code"].as_str().unwrap_or(""),
                l["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if !recorded.is_empty() {
        out.push_str("Structure (when added)\n");
        out.extend(recorded);
    }
    out.push_str("Create request (POST /v2/images)\n");
    let body = serde_json::to_string_pretty(&r.create_request).unwrap_or_default();
    for l in body.lines() {
        out.push_str(&format!("  {l}\n"));
    }
    out.push_str(&format!("Command\n  {}\n", r.command));
    let rules = lines_text(&r.lint, false) + &lines_text(&r.target_rules, true);
    out.push_str(&format!("Target {}\n{rules}", r.target.name()));
    out.push_str(&r.verdict.line(r.target.name()));
    out.push('\n');
    out
}
