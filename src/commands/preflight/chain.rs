//! Reading a XenServer chain: a folder or tarball of `0.vhd` (leaf) …
//! `n.vhd` (base), listed and unpacked, and each link's metadata read for
//! the pure rules in [`crate::cloud::targets`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cloud::targets::{link_number, ChainLink, Facts};
use crate::disk::Kind;
use crate::format::{fourcc, Footer, Layout};
use crate::{Error, Result};

/// A chain folder's entries: the numbered links, sorted, and the other names.
#[derive(Debug, Clone, Default)]
pub struct FolderListing {
    pub links: Vec<(usize, PathBuf)>,
    pub others: Vec<String>,
}

/// Bytes a progress display should expect for `image`: the file's size, or
/// for a chain folder the size of its links.
pub fn progress_total(image: &Path) -> u64 {
    if !image.is_dir() {
        return std::fs::metadata(image).map_or(0, |m| m.len());
    }
    list_folder(image).map_or(0, |listing| {
        listing
            .links
            .iter()
            .filter_map(|(_, p)| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Lists a chain folder.
pub fn list_folder(dir: &Path) -> Result<FolderListing> {
    let mut links = Vec::new();
    let mut others = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, "read folder", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, "read folder", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match link_number(&name) {
            Some(n) => links.push((n, entry.path())),
            None => others.push(name),
        }
    }
    links.sort();
    others.sort();
    Ok(FolderListing { links, others })
}

/// Reads a link's metadata.
pub fn read_link(index: usize, path: &Path) -> Result<ChainLink> {
    let source = crate::disk::Source::open(path)?;
    let facts = Facts::from_bytes(path, source.bytes());
    let layout = Layout::parse(source.bytes()).filter(|_| facts.kind != Kind::Raw);
    let parent = layout
        .as_ref()
        .and_then(|l| l.dynamic.as_ref())
        .and_then(|d| d.as_ref().ok())
        .map(|p| p.header.parent_unique_id)
        .filter(|_| facts.kind == Kind::Differencing);
    let f = facts.footer.as_ref();
    Ok(ChainLink {
        index,
        path: path.to_path_buf(),
        kind: facts.kind,
        current_size: f.map(|f| f.current_size),
        creator: f.map(|f| fourcc(f.creator_application)),
        unique_id: f.map(|f| uuid::Uuid::from_bytes(f.unique_id).to_string()),
        parent_unique_id: parent.map(|p| uuid::Uuid::from_bytes(p).to_string()),
        hidden: f.map(Footer::hidden),
        footer: facts.footer.clone(),
        parent_id_bytes: parent,
    })
}

/// Unpacks the links (`N.vhd` at the top of the archive) of a gzipped or
/// plain tarball read from `reader` into `dir`; everything else is listed,
/// not written.
pub fn extract_chain(reader: impl Read, gzipped: bool, dir: &Path) -> Result<Vec<String>> {
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(reader);
    let mut others = Vec::new();
    let io = |e| Error::io(dir, "read tarball", e);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let bare = name.strip_prefix("./").unwrap_or(&name).to_string();
        let regular = entry.header().entry_type().is_file();
        match link_number(&bare) {
            Some(_) if regular => {
                let target = dir.join(&bare);
                let out =
                    std::fs::File::create(&target).map_err(|e| Error::io(&target, "create", e))?;
                // Sparse: a chain's links are mostly unallocated, zero blocks.
                crate::pipeline::stream::copy_sparse(&mut entry, &out, &target)?;
            }
            _ if bare.is_empty() || bare == "." => {}
            _ => others.push(bare),
        }
    }
    Ok(others)
}
