//! A fast hasher for the broker's maps.
//!
//! Every call looks up a service queue and a reply inbox by name; with the
//! standard SipHash those two lookups were about a tenth of the broker's
//! own time per call. The keys are names this process registered itself
//! (a lookup with a foreign name just misses), so the flooding attacks
//! SipHash defends against do not apply. This is the multiply-rotate
//! scheme of rustc's FxHasher, over eight bytes at a time.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap` state using [`FxHasher`].
pub(crate) type FxBuildHasher = BuildHasherDefault<FxHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Hashes by rotate, xor, multiply; not DoS-resistant (see the module docs).
#[derive(Default)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn names_that_differ_hash_differently() {
        let state = FxBuildHasher::default();
        let names = [
            "svc",
            "svc2",
            "mem.inbox.1",
            "mem.inbox.2",
            "mem.inbox.10",
            "",
        ];
        let hashes: std::collections::HashSet<u64> =
            names.iter().map(|n| state.hash_one(n)).collect();
        assert_eq!(hashes.len(), names.len());
        assert_eq!(state.hash_one("svc"), state.hash_one(String::from("svc")));
    }
}
