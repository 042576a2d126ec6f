//! The two checksums ext2/3/4 metadata carries: CRC32C for `metadata_csum`
//! and the CRC16 (ANSI/IBM, reflected polynomial 0xA001) that `uninit_bg`
//! (`gdt_csum`) puts in group descriptors.

/// CRC32C as ext4 computes it: seeded with `seed` and without the final
/// inversion. A standard CRC32C is `!raw(!0, data)`, so the raw value over a
/// seed is `!crc32c_append(!seed, data)`.
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

const CRC16_POLY_REFLECTED: u16 = 0xA001;

const fn crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        // `i` < 256, so the cast is exact.
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC16_POLY_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static CRC16_TABLE: [u16; 256] = crc16_table();

/// CRC16 continuing from `crc` (ext2fs starts group descriptor sums at
/// `!0`), with no final inversion.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        let index = usize::from((crc ^ u16::from(byte)) & 0xFF);
        crc = (crc >> 8) ^ CRC16_TABLE[index];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_published_check_values() {
        // CRC-16/ARC and CRC-16/MODBUS of "123456789".
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
        assert_eq!(crc16(0xFFFF, b"123456789"), 0x4B37);
    }

    #[test]
    fn crc32c_raw_is_the_uninverted_crc() {
        // Standard CRC32C("123456789") = 0xE3069283.
        assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
        // Chaining raw values equals one pass.
        let one = crc32c_raw(0x1234_5678, b"abcdef");
        let two = crc32c_raw(crc32c_raw(0x1234_5678, b"abc"), b"def");
        assert_eq!(one, two);
    }
}
