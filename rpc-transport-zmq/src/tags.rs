//! [`TagArena`]: the server's copies of request inbox tags.

use bytes::{Bytes, BytesMut};

/// Bytes of tags one block holds; a tag longer than that gets a block of its own.
const BLOCK: usize = 4096;

/// Copies of the inbox tags of requests in progress, cut from shared blocks.
///
/// A delivery keeps its request's tag until the reply. Kept as the view
/// zeromq decoded, it would keep zeromq's whole read buffer alive, and that
/// buffer's next read would allocate a new one (copying what it held)
/// instead of reusing it. A copy of its own costs an allocation, and
/// another when the reply clones it; a copy cut from a block costs neither
/// (one allocation per block, clones only count references). A block is
/// freed when its last tag is.
#[derive(Default)]
pub(crate) struct TagArena {
    block: BytesMut,
}

impl TagArena {
    /// A copy of `tag` that shares no storage with the frame it came in.
    pub(crate) fn copy(&mut self, tag: &[u8]) -> Bytes {
        if self.block.capacity() - self.block.len() < tag.len() {
            self.block = BytesMut::with_capacity(BLOCK.max(tag.len()));
        }
        self.block.extend_from_slice(tag);
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_hold_their_bytes_across_blocks() {
        let mut arena = TagArena::default();
        let tags: Vec<Vec<u8>> = (0..2_000u32)
            .map(|n| n.to_be_bytes().repeat(1 + n as usize % 3))
            .chain([vec![7; BLOCK + 1], Vec::new()])
            .collect();
        let copies: Vec<Bytes> = tags.iter().map(|tag| arena.copy(tag)).collect();
        for (tag, copy) in tags.iter().zip(&copies) {
            assert_eq!(copy.as_ref(), tag.as_slice());
        }
    }
}
