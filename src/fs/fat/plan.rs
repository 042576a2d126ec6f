//! Planning a grow: what moves, what is zeroed and which sectors are
//! rewritten, as plain data ([`FatGrowPlan`]). Reads the volume; writes
//! nothing.

use super::bpb::{off, Bpb, BPB_TOT_SEC32};
use super::entries::{allocated_runs, clear_entries, volume_clean};
use super::error::{read_vec, unsupported, FatError};
use super::fsinfo::read_fsinfo;
use super::layout::Layout;
use super::{info, read_volume, FatInfo, FatType, Volume};
use crate::disk::device::Device;

/// Bound on the FAT-size fixed point iteration.
const MAX_FAT_SIZE_ITERATIONS: usize = 64;

/// A byte range to copy to a higher offset (copied back to front, so the
/// ranges may overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Move {
    pub from: u64,
    pub to: u64,
    pub len: u64,
}

/// How a volume grows: the steps, in the order `apply_grow` runs them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FatGrowPlan {
    pub before: FatInfo,
    pub after: FatInfo,
    /// Whether the FAT grows and the data area moves (not crash-safe).
    pub moves_data: bool,
    /// Run first, in order.
    pub moves: Vec<Move>,
    /// `(offset, len)` to zero, after the moves.
    pub zero_fills: Vec<(u64, u64)>,
    /// `(offset, bytes)`, written last (boot sectors, FSInfo, FAT entries).
    /// Serialized as `{offset, len}` extents.
    #[serde(serialize_with = "crate::partition::serialize_write_extents")]
    pub writes: Vec<(u64, Vec<u8>)>,
    /// Bytes of data the moves copy.
    pub bytes_moved: u64,
    pub notes: Vec<String>,
}

/// Whether a grow may move the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrowMode {
    /// Only grow when the FAT already has room ([`FatError::NeedsMove`]
    /// otherwise); nothing but metadata sectors is written.
    InPlaceOnly,
    /// Grow the FAT and move the data area when needed (not crash-safe).
    AllowMove,
}

/// The steps collected while planning.
#[derive(Default)]
struct Steps {
    moves: Vec<Move>,
    zero_fills: Vec<(u64, u64)>,
    writes: Vec<(u64, Vec<u8>)>,
    bytes_moved: u64,
    notes: Vec<String>,
}

/// What a plan is for: the volume, its new size and the limits that
/// refusals quote.
struct Target<'a> {
    dev: &'a dyn Device,
    v: &'a Volume,
    l: Layout,
    new_size_bytes: u64,
    new_total: u64,
    max_in_place_bytes: u64,
}

impl Target<'_> {
    fn type_change(&self, clusters: u64) -> FatError {
        FatError::TypeChange {
            from: self.l.fat_type.name(),
            to: FatType::from_clusters(clusters).name(),
            clusters,
            max_in_place_bytes: self.max_in_place_bytes,
        }
    }

    fn no_room(&self, needed_sectors: u64) -> FatError {
        FatError::NoRoom {
            fat_sectors: self.l.fat_size,
            needed_sectors,
            new_size_bytes: self.new_size_bytes,
            max_in_place_bytes: self.max_in_place_bytes,
        }
    }
}

/// The FAT size (sectors) for a volume of `new_total` sectors when the FAT
/// must grow: the smallest size at least `l.fat_size` that holds its own
/// clusters and keeps the data area's offset modulo the cluster size.
fn grown_fat_size(l: &Layout, new_total: u64) -> Option<u64> {
    let mut f = l.fat_size;
    for _ in 0..MAX_FAT_SIZE_ITERATIONS {
        let clusters = l.clusters_for(new_total, f)?;
        let need = l.fat_sectors_for(clusters).max(l.fat_size);
        // Round the growth so num_fats × growth is a whole number of clusters.
        let mut g = need - l.fat_size;
        while (l.num_fats * g) % l.spc != 0 {
            g += 1;
        }
        let next = l.fat_size + g;
        if next <= f {
            return Some(f);
        }
        f = next;
    }
    None
}

/// Plans growing the volume on `dev` to `new_size_bytes` (normally the
/// partition's new size, `dev.size_bytes()`), moving the data area if the
/// FAT must grow (see [`FatGrowPlan::moves_data`]). Reads; writes nothing.
pub fn plan_grow(dev: &dyn Device, new_size_bytes: u64) -> Result<FatGrowPlan, FatError> {
    plan_grow_with(dev, new_size_bytes, GrowMode::AllowMove)
}

/// [`plan_grow`] with an explicit [`GrowMode`].
pub fn plan_grow_with(
    dev: &dyn Device,
    new_size_bytes: u64,
    mode: GrowMode,
) -> Result<FatGrowPlan, FatError> {
    let v = read_volume(dev)?.ok_or(FatError::NotFat)?;
    let l = v.layout;
    let mut steps = Steps::default();
    let new_total = target_total(dev, &l, new_size_bytes, &mut steps.notes)?;
    let t = Target {
        dev,
        v: &v,
        l,
        new_size_bytes,
        new_total,
        max_in_place_bytes: l.max_in_place_bytes(),
    };
    let in_place_clusters = l.clusters_for(new_total, l.fat_size).unwrap_or(0);
    let fits_in_place = in_place_clusters <= l.capacity_for(l.fat_size);
    if FatType::from_clusters(in_place_clusters) != l.fat_type
        && (fits_in_place || mode == GrowMode::InPlaceOnly)
    {
        return Err(t.type_change(in_place_clusters));
    }
    if !volume_clean(dev, &l)? {
        steps.notes.push(
            "FAT entry 1 says the volume was not cleanly unmounted; check it with fsck.fat".into(),
        );
    }
    let (fat_size, new_clusters) = if fits_in_place {
        clear_beyond(&t, in_place_clusters + 2, &mut steps)?;
        (l.fat_size, in_place_clusters)
    } else if mode == GrowMode::InPlaceOnly {
        return Err(FatError::NeedsMove {
            fat_sectors: l.fat_size,
            needed_sectors: l.fat_sectors_for(in_place_clusters),
            max_in_place_bytes: t.max_in_place_bytes,
        });
    } else {
        plan_move(&t, in_place_clusters, &mut steps)?
    };
    if new_clusters > l.fat_type.max_clusters() {
        return Err(unsupported(
            "FAT boot sector",
            "BPB_TotSec32",
            off(BPB_TOT_SEC32),
            format!("{new_total} sectors ({new_clusters} clusters)"),
            format!(
                "at most {} clusters for {} (largest in-place size: {} bytes)",
                l.fat_type.max_clusters(),
                l.fat_type.name(),
                t.max_in_place_bytes
            ),
        ));
    }
    finish(&t, fat_size, new_clusters, steps)
}

/// The new sector count: the device's, at most 2^32-1, never less than now.
fn target_total(
    dev: &dyn Device,
    l: &Layout,
    new_size_bytes: u64,
    notes: &mut Vec<String>,
) -> Result<u64, FatError> {
    if new_size_bytes > dev.size_bytes() {
        return Err(unsupported(
            "device",
            "size",
            0,
            format!("a plan for {new_size_bytes} bytes"),
            format!("at most the device's {} bytes", dev.size_bytes()),
        ));
    }
    let new_total = (new_size_bytes / l.bps).min(u64::from(u32::MAX));
    if new_size_bytes / l.bps > u64::from(u32::MAX) {
        notes.push("FAT holds at most 2^32-1 sectors; the rest of the device is unused".into());
    }
    if new_total < l.total {
        return Err(unsupported(
            "FAT boot sector",
            "BPB_TotSec32",
            off(BPB_TOT_SEC32),
            format!("{} sectors now, {new_total} asked", l.total),
            "a size at least the current one (shrinking is not supported)".into(),
        ));
    }
    Ok(new_total)
}

/// Entries from the old last cluster up to `end` must read free.
fn clear_beyond(t: &Target<'_>, end: u64, steps: &mut Steps) -> Result<(), FatError> {
    let l = &t.l;
    let cleared = clear_entries(t.dev, l, l.clusters() + 2, end, &mut steps.writes)?;
    if cleared > 0 {
        steps.notes.push(format!(
            "{cleared} FAT entries beyond the old last cluster were not free; marked free"
        ));
    }
    Ok(())
}

/// The FAT must grow: every FAT copy grows, the root directory and every
/// allocated cluster move up. Returns the new FAT size and cluster count.
fn plan_move(
    t: &Target<'_>,
    in_place_clusters: u64,
    steps: &mut Steps,
) -> Result<(u64, u64), FatError> {
    let l = &t.l;
    let needed = l.fat_sectors_for(in_place_clusters);
    let f = grown_fat_size(l, t.new_total).ok_or_else(|| t.no_room(needed))?;
    let clusters = l
        .clusters_for(t.new_total, f)
        .ok_or_else(|| t.no_room(needed))?;
    let fits_field = l.fat_type == FatType::Fat32 || f <= u64::from(u16::MAX);
    if FatType::from_clusters(clusters) != l.fat_type {
        return Err(t.type_change(clusters));
    }
    if clusters <= l.clusters() || !fits_field {
        return Err(t.no_room(needed));
    }
    // Entries past the old last cluster in the old FAT must read free;
    // the FAT's new sectors are zeroed.
    clear_beyond(t, l.capacity_for(l.fat_size) + 2, steps)?;
    let shift = l.num_fats * (f - l.fat_size) * l.bps;
    let old_data = l.sector_bytes(l.data_start());
    let cluster_bytes = l.spc * l.bps;
    let push = |from: u64, len: u64, steps: &mut Steps| {
        steps.moves.push(Move {
            from,
            to: from + shift,
            len,
        });
        steps.bytes_moved += len;
    };
    // Highest run first: each lands above data not yet moved.
    for &(first, count) in allocated_runs(t.dev, l)?.iter().rev() {
        push(
            old_data + (first - 2) * cluster_bytes,
            count * cluster_bytes,
            steps,
        );
    }
    if l.root_dir_sectors > 0 {
        let len = l.root_dir_sectors * l.bps;
        push(old_data - len, len, steps);
    }
    // FAT copies, highest first; then zero each copy's new sectors.
    for i in (1..l.num_fats).rev() {
        steps.moves.push(Move {
            from: l.fat_offset(i, l.fat_size),
            to: l.fat_offset(i, f),
            len: l.fat_size * l.bps,
        });
    }
    for i in 0..l.num_fats {
        steps.zero_fills.push((
            l.fat_offset(i, f) + l.fat_size * l.bps,
            (f - l.fat_size) * l.bps,
        ));
    }
    // Entry fixes were computed at the old FAT offsets; move them too.
    for (at, _) in steps.writes.iter_mut() {
        let copy = (*at / l.bps - l.reserved) / l.fat_size;
        *at += copy * (f - l.fat_size) * l.bps;
    }
    steps.notes.push(format!(
        "the FAT grows from {} to {f} sectors; {} bytes of data move up by {shift} bytes (not crash-safe)",
        l.fat_size, steps.bytes_moved
    ));
    Ok((f, clusters))
}

/// Adds the FSInfo, backup and boot-sector writes and builds the plan.
fn finish(
    t: &Target<'_>,
    fat_size: u64,
    new_clusters: u64,
    mut steps: Steps,
) -> Result<FatGrowPlan, FatError> {
    let (v, l) = (t.v, &t.l);
    let added = new_clusters - l.clusters();
    let boot = v.bpb.resized(t.new_total, fat_size);
    let after_fsinfo = v.fsinfo.as_ref().map(|f| f.grown(added, l.clusters() + 2));
    if let Some(fsi) = &after_fsinfo {
        steps
            .writes
            .push((l.sector_bytes(fsi.sector), fsi.to_bytes()));
    }
    if l.fat_type == FatType::Fat32 {
        backup_writes(t, fat_size, added, &mut steps)?;
    }
    // The primary boot sector last: until it is written the volume reads as before.
    steps.writes.push((0, boot.to_bytes()));
    let mut after_layout = *l;
    after_layout.total = t.new_total;
    after_layout.fat_size = fat_size;
    let after = info(&Volume {
        bpb: boot,
        layout: after_layout,
        fsinfo: after_fsinfo,
    });
    Ok(FatGrowPlan {
        before: info(v),
        after,
        moves_data: !steps.moves.is_empty() || fat_size != l.fat_size,
        moves: steps.moves,
        zero_fills: steps.zero_fills,
        writes: steps.writes,
        bytes_moved: steps.bytes_moved,
        notes: steps.notes,
    })
}

/// FAT32: the backup boot sector gets the same field changes as the primary
/// (fsck.fat compares them), and the backup FSInfo the same counts.
fn backup_writes(
    t: &Target<'_>,
    fat_size: u64,
    added: u64,
    steps: &mut Steps,
) -> Result<(), FatError> {
    let (v, l) = (t.v, &t.l);
    let bk = u64::from(v.bpb.backup_boot);
    if bk == 0 || bk == u64::from(u16::MAX) || bk >= l.reserved {
        return Ok(());
    }
    let raw = read_vec(
        t.dev,
        l.sector_bytes(bk),
        off(super::bpb::BOOT_SECTOR_BYTES),
        "FAT backup boot sector",
    )?;
    let Some(backup) = Bpb::parse(&raw) else {
        steps.notes.push(format!(
            "backup boot sector {bk} is not a FAT boot sector; left alone"
        ));
        return Ok(());
    };
    // The backup's own total-sector field choice follows the primary's.
    let mut backup = backup;
    backup.total_sectors_16 = v.bpb.total_sectors_16;
    steps.writes.push((
        l.sector_bytes(bk),
        backup.resized(t.new_total, fat_size).to_bytes(),
    ));
    if let Some(fsi) = read_fsinfo(t.dev, l, bk + u64::from(v.bpb.fs_info))? {
        let grown = fsi.grown(added, l.clusters() + 2);
        steps
            .writes
            .push((l.sector_bytes(fsi.sector), grown.to_bytes()));
    }
    Ok(())
}
