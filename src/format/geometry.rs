//! CHS geometry as the VHD specification computes it from a size.

use super::SECTOR_SIZE;

/// Cylinders, heads and sectors per track, as stored in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads per cylinder.
    pub heads: u8,
    /// Sectors per track (of 512 bytes).
    pub sectors_per_track: u8,
}

/// The geometry qemu's `force_size` writes on purpose: the largest one.
pub const MAX_GEOMETRY: Geometry = Geometry {
    cylinders: 65535,
    heads: 16,
    sectors_per_track: 255,
};

impl Geometry {
    /// The specification's algorithm (appendix "CHS calculation"), integer arithmetic.
    pub fn from_size(size_bytes: u64) -> Geometry {
        let cap = 65535u64 * 16 * 255;
        let total = (size_bytes / SECTOR_SIZE).min(cap);
        let (spt, heads, cth);
        if total >= 65535 * 16 * 63 {
            spt = 255u64;
            heads = 16u64;
            cth = total / spt;
        } else {
            let mut s = 17u64;
            let mut c = total / s;
            let mut h = c.div_ceil(1024).max(4);
            if c >= h * 1024 || h > 16 {
                s = 31;
                h = 16;
                c = total / s;
            }
            if c >= h * 1024 {
                s = 63;
                h = 16;
                c = total / s;
            }
            spt = s;
            heads = h;
            cth = c;
        }
        let cylinders = cth / heads;
        // Each value fits its field by construction: spt ≤ 255, heads ≤ 16,
        // cylinders ≤ cap / (16 * 17) < 65536.
        Geometry {
            cylinders: u16::try_from(cylinders).unwrap_or(u16::MAX),
            heads: u8::try_from(heads).unwrap_or(u8::MAX),
            sectors_per_track: u8::try_from(spt).unwrap_or(u8::MAX),
        }
    }

    /// C×H×S×512: the size qemu uses for some creators.
    pub fn size_bytes(self) -> u64 {
        u64::from(self.cylinders)
            * u64::from(self.heads)
            * u64::from(self.sectors_per_track)
            * SECTOR_SIZE
    }

    /// Packs into the footer's 4-byte field.
    pub fn to_bytes(self) -> [u8; 4] {
        let c = self.cylinders.to_be_bytes();
        [c[0], c[1], self.heads, self.sectors_per_track]
    }

    /// Unpacks the footer's 4-byte field.
    pub fn from_bytes(b: [u8; 4]) -> Geometry {
        Geometry {
            cylinders: u16::from_be_bytes([b[0], b[1]]),
            heads: b[2],
            sectors_per_track: b[3],
        }
    }

    /// The smallest size whose geometry covers at least `size_bytes` (what
    /// qemu does when creating without `force_size`).
    pub fn round_up_size(size_bytes: u64) -> u64 {
        let g = Geometry::from_size(size_bytes);
        if g.size_bytes() >= size_bytes {
            return g.size_bytes();
        }
        // qemu grows the sector count until C×H×S covers it; the same loop, bounded
        // by the geometry cap.
        let mut total = size_bytes.div_ceil(SECTOR_SIZE);
        let cap = 65535u64 * 16 * 255;
        while total <= cap {
            let g = Geometry::from_size(total * SECTOR_SIZE);
            if g.size_bytes() >= size_bytes {
                return g.size_bytes();
            }
            total += 1;
        }
        MAX_GEOMETRY.size_bytes()
    }
}

impl std::fmt::Display for Geometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.cylinders, self.heads, self.sectors_per_track
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_gib_is_2080_16_63() {
        let g = Geometry::from_size(1 << 30);
        assert_eq!(g.to_string(), "2080/16/63");
        assert_eq!(
            (1u64 << 30) - g.size_bytes(),
            256 * 1024 + 1024 * 1024 - 1024 * 1024
        );
    }

    #[test]
    fn small_disks_use_17_sectors() {
        let g = Geometry::from_size(10 << 20);
        assert_eq!(g.sectors_per_track, 17);
        assert_eq!(g.heads, 4);
    }

    #[test]
    fn huge_disks_cap() {
        assert_eq!(Geometry::from_size(u64::MAX), MAX_GEOMETRY);
    }

    #[test]
    fn four_gib_rounds_up_like_qemu() {
        assert_eq!(Geometry::round_up_size(4 << 30), 4_295_467_008);
    }

    #[test]
    fn bytes_round_trip() {
        let g = Geometry::from_size(1 << 30);
        assert_eq!(Geometry::from_bytes(g.to_bytes()), g);
    }
}
