//! Test helpers shared by the LogQL modules.

/// Deterministic pseudo-random inputs built from interesting fragments, for the
/// "never panics on anything" tests of parsers and decoders.
pub(crate) fn fuzz_inputs(fragments: &[&str], n: usize) -> Vec<Vec<u8>> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|_| {
            let mut v = Vec::new();
            for _ in 0..(next() % 12) {
                let r = next();
                if r % 7 == 0 {
                    v.push((r >> 8) as u8);
                } else {
                    v.extend_from_slice(fragments[(r >> 16) as usize % fragments.len()].as_bytes());
                }
            }
            v
        })
        .collect()
}
