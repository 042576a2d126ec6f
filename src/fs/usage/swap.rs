//! A Linux swap area (`SWAPSPACE2`): only its first page (the header, with
//! the label, UUID and bad-page list) is in use; the pages after it hold
//! nothing once the system is off. The page size is found from where the
//! signature sits (4, 8, 16 or 64 KiB); the header's own byte order is
//! followed. A hibernation image (another signature) is not a swap area
//! here and so is kept.

use super::{read, FreeSpace, Run, UsageError};
use crate::disk::device::Device;

const SIGNATURE: &[u8; 10] = b"SWAPSPACE2";
const PAGE_SIZES: [u64; 4] = [4096, 8192, 16384, 65536];
const VERSION_AT: usize = 1024;
const LAST_PAGE_AT: usize = 1028;
const VERSION_1: u32 = 1;

/// A swap area: free from its second page to its last page.
pub struct SwapFree {
    page: u64,
    size: u64,
}

/// Reads a swap header at the start of `dev`: `None` without the signature.
pub fn open(dev: &dyn Device) -> Result<Option<SwapFree>, UsageError> {
    for page in PAGE_SIZES {
        if dev.size_bytes() < page * 2 {
            continue;
        }
        let head = read(
            dev,
            0,
            usize::try_from(page).unwrap_or(4096),
            "the swap header",
        )?;
        if head.ends_with(SIGNATURE) {
            let word = |at: usize| -> [u8; 4] {
                head.get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 4])
            };
            let (version, last_page) = if u32::from_le_bytes(word(VERSION_AT)) == VERSION_1 {
                (VERSION_1, u32::from_le_bytes(word(LAST_PAGE_AT)))
            } else {
                (
                    u32::from_be_bytes(word(VERSION_AT)),
                    u32::from_be_bytes(word(LAST_PAGE_AT)),
                )
            };
            if version != VERSION_1 {
                return Err(UsageError::corrupt(
                    "swap header",
                    "version",
                    VERSION_AT as u64,
                    version,
                    VERSION_1,
                ));
            }
            let size = (u64::from(last_page) + 1)
                .saturating_mul(page)
                .min(dev.size_bytes() / page * page);
            return Ok(Some(SwapFree { page, size }));
        }
    }
    Ok(None)
}

impl FreeSpace for SwapFree {
    fn name(&self) -> &'static str {
        "swap"
    }

    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn free_runs(
        &self,
        _dev: &dyn Device,
        start: u64,
        len: u64,
        out: &mut Vec<Run>,
    ) -> Result<(), UsageError> {
        super::push_clipped(
            out,
            self.page,
            self.size.saturating_sub(self.page),
            start,
            len,
        );
        Ok(())
    }

    fn validate(&self, _dev: &dyn Device) -> Result<u64, UsageError> {
        Ok(self.size.saturating_sub(self.page))
    }
}
