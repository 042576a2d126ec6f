//! Deciding fast whether a run of bytes is all zero.

/// Whether every byte of `data` is zero. Random data fails on the first
/// bytes; zero data is scanned in wide chunks the compiler vectorizes.
pub fn is_zero(data: &[u8]) -> bool {
    let (head, rest) = data.split_at(data.len().min(16));
    if head.iter().any(|&b| b != 0) {
        return false;
    }
    let mut chunks = rest.chunks_exact(512);
    for c in &mut chunks {
        if c.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_single_byte_anywhere() {
        let mut v = vec![0u8; 5000];
        assert!(is_zero(&v));
        for i in [0, 15, 16, 600, 4999] {
            v[i] = 1;
            assert!(!is_zero(&v), "{i}");
            v[i] = 0;
        }
        assert!(is_zero(&[]));
    }
}
