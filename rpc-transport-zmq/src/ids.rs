//! [`IdMap`]: the client's maps keyed by ids it made itself (inbox ids,
//! `(inbox, correlation id)` pairs), with a hasher of a few instructions.
//!
//! Every call inserts its key into one of these and every reply looks up
//! two; with the standard library's SipHash those hashes were about a
//! twentieth of a call's instructions. SipHash guards a map against keys
//! chosen to collide, which these do not need: every key stored is one
//! this client made (inbox ids count up, correlation ids count up from a
//! random start), so a peer can choose only what is looked up, and a
//! lookup of a foreign key costs what any miss costs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by ids this client made; see the module docs.
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Multiplicative hashing (the `FxHasher` scheme) of whole integers.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

/// An odd constant with well-spread bits (from `rustc-hash`).
const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by integer keys; correct for anything else.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(SEED);
    }

    fn finish(&self) -> u64 {
        // The product's high bits depend on every bit of the key, its low
        // bits only on the key's low bits; the table indexes by low bits.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_inbox_spread_over_buckets() {
        // Correlation ids of one inbox differ only in their low bits.
        let build = BuildHasherDefault::<IdHasher>::default();
        let buckets: std::collections::HashSet<u64> = (0..64u64)
            .map(|id| std::hash::BuildHasher::hash_one(&build, (7u64, 1_000 + id)) & 63)
            .collect();
        assert!(buckets.len() > 32, "{} buckets of 64", buckets.len());
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut map: IdMap<(u64, u64), u64> = IdMap::default();
        for id in 0..1_000 {
            map.insert((id % 3, id), id);
        }
        assert!((0..1_000).all(|id| map.get(&(id % 3, id)) == Some(&id)));
        assert_eq!(map.get(&(9, 9)), None);
    }
}
