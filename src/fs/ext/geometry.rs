//! Where things are in an ext filesystem of a given shape: group
//! boundaries, which groups carry superblock and descriptor backups
//! (sparse_super: 0, 1 and powers of 3, 5 and 7), and where each descriptor
//! block lives (classic contiguous table, or one per meta group with
//! meta_bg). Pure arithmetic; no I/O.

/// The shape of one filesystem (before or after growing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u64,
    pub first_data_block: u64,
    pub blocks_per_group: u64,
    pub blocks_count: u64,
    pub groups: u64,
    pub desc_size: u64,
    pub inode_blocks_per_group: u64,
    pub sparse_super: bool,
    pub meta_bg: bool,
    pub first_meta_bg: u64,
    /// Reserved GDT blocks after the descriptor table (resize_inode).
    pub reserved_gdt_blocks: u64,
    /// Groups per flex group, 0 without flex_bg.
    pub flex_size: u64,
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    if n == 0 {
        return false;
    }
    while n % base == 0 {
        n /= base;
    }
    n == 1
}

impl Geometry {
    pub fn desc_per_block(&self) -> u64 {
        self.block_size / self.desc_size
    }

    /// Descriptor blocks needed for all groups.
    pub fn desc_blocks(&self) -> u64 {
        self.groups.div_ceil(self.desc_per_block())
    }

    /// Blocks after a backup superblock in the classic layout: the
    /// descriptor table plus the reserved GDT blocks, or `s_first_meta_bg`
    /// with meta_bg.
    pub fn classic_gdt_blocks(&self) -> u64 {
        if self.meta_bg {
            self.first_meta_bg
        } else {
            self.desc_blocks() + self.reserved_gdt_blocks
        }
    }

    pub fn group_first(&self, group: u64) -> u64 {
        self.first_data_block + group * self.blocks_per_group
    }

    /// Blocks in `group` (the last one may be short).
    pub fn group_blocks(&self, group: u64) -> u64 {
        let first = self.group_first(group);
        self.blocks_per_group
            .min(self.blocks_count.saturating_sub(first))
    }

    pub fn group_last(&self, group: u64) -> u64 {
        self.group_first(group) + self.group_blocks(group).max(1) - 1
    }

    pub fn group_of(&self, block: u64) -> u64 {
        block.saturating_sub(self.first_data_block) / self.blocks_per_group
    }

    pub fn has_super(&self, group: u64) -> bool {
        if group <= 1 || !self.sparse_super {
            return true;
        }
        group % 2 == 1 && (is_power_of(group, 3) || is_power_of(group, 5) || is_power_of(group, 7))
    }

    /// Whether `group` lies in the meta_bg part of the descriptor layout.
    fn in_meta_part(&self, group: u64) -> bool {
        self.meta_bg && group / self.desc_per_block() >= self.first_meta_bg
    }

    /// Whether `group` holds a copy of its meta group's descriptor block.
    pub fn has_meta_desc(&self, group: u64) -> bool {
        if !self.in_meta_part(group) {
            return false;
        }
        let index = group % self.desc_per_block();
        index == 0 || index == 1 || index == self.desc_per_block() - 1
    }

    /// Blocks at the start of `group` taken by its superblock and
    /// descriptor copies (always a prefix of the group).
    pub fn backup_len(&self, group: u64) -> u64 {
        let sb = u64::from(self.has_super(group));
        let len = if self.in_meta_part(group) {
            sb + u64::from(self.has_meta_desc(group))
        } else if sb == 1 {
            1 + self.classic_gdt_blocks()
        } else {
            0
        };
        len.min(self.group_blocks(group))
    }

    /// Every block where descriptor block `index` is stored, the primary
    /// (in group 0 or the meta group's first group) first.
    pub fn desc_block_locations(&self, index: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if self.meta_bg && index >= self.first_meta_bg {
            let first = index * self.desc_per_block();
            for group in [first, first + 1, first + self.desc_per_block() - 1] {
                if group < self.groups && !out.iter().any(|&(g, _)| g == group) {
                    let at = self.group_first(group) + u64::from(self.has_super(group));
                    out.push((group, at));
                }
            }
        } else if index < self.classic_gdt_blocks() {
            // Classic copies exist only in groups before the meta_bg part.
            let classic = std::iter::once(0)
                .chain(self.backup_groups())
                .filter(|&g| !self.in_meta_part(g));
            for group in classic {
                out.push((group, self.group_first(group) + 1 + index));
            }
        }
        out
    }

    /// Groups after group 0 with a superblock backup, ascending (the
    /// order ext2fs_list_backups yields them in).
    pub fn backup_groups(&self) -> impl Iterator<Item = u64> {
        let mut groups: Vec<u64> = if self.sparse_super {
            // 1 and the powers of 3, 5 and 7, without walking every group.
            let mut v = vec![1];
            for base in [3u64, 5, 7] {
                let mut p = base;
                while p < self.groups {
                    v.push(p);
                    p = p.saturating_mul(base);
                }
            }
            v
        } else {
            (1..self.groups).collect()
        };
        groups.retain(|&g| g < self.groups);
        groups.sort_unstable();
        groups.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry {
            block_size: 1024,
            first_data_block: 1,
            blocks_per_group: 8192,
            blocks_count: 1 + 8192 * 50,
            groups: 50,
            desc_size: 64,
            inode_blocks_per_group: 512,
            sparse_super: true,
            meta_bg: false,
            first_meta_bg: 0,
            reserved_gdt_blocks: 256,
            flex_size: 16,
        }
    }

    #[test]
    fn sparse_backups_are_powers_of_3_5_7() {
        let g = geo();
        let groups: Vec<u64> = g.backup_groups().collect();
        assert_eq!(groups, vec![1, 3, 5, 7, 9, 25, 27, 49]);
        assert_eq!(g.desc_blocks(), 4);
        assert_eq!(g.backup_len(3), 1 + 4 + 256);
        assert_eq!(g.backup_len(4), 0);
    }

    #[test]
    fn meta_bg_descriptors_sit_in_first_second_and_last_group() {
        let mut g = geo();
        g.meta_bg = true;
        g.first_meta_bg = 2;
        g.reserved_gdt_blocks = 0;
        // Meta group 2 covers groups 32..48 (16 descriptors per block).
        assert_eq!(
            g.desc_block_locations(2),
            vec![
                (32, g.group_first(32)),
                (33, g.group_first(33)),
                (47, g.group_first(47))
            ]
        );
        assert_eq!(g.backup_len(32), 1);
        assert_eq!(g.backup_len(33), 1);
        assert_eq!(g.backup_len(49), 2);
        assert_eq!(g.backup_len(25), 1 + 2);
    }

    #[test]
    fn classic_descriptor_copies_stop_where_meta_bg_starts() {
        // Regression: without sparse_super every group has a superblock,
        // but copies of the classic table belong only to groups before
        // the meta_bg part (later ones hold their bitmaps there).
        let mut g = geo();
        g.sparse_super = false;
        g.meta_bg = true;
        g.first_meta_bg = 1;
        g.reserved_gdt_blocks = 0;
        let groups: Vec<u64> = g.desc_block_locations(0).iter().map(|l| l.0).collect();
        assert_eq!(groups, (0..16).collect::<Vec<u64>>());
        assert_eq!(g.backup_len(20), 1);
    }
}
