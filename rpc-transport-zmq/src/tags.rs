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
///
/// A client's calls from one inbox all carry its tag, so the last copy is
/// kept and handed out again (a reference count) while the tags repeat.
#[derive(Default)]
pub(crate) struct TagArena {
    block: BytesMut,
    /// The last tag copied.
    last: Bytes,
}

impl TagArena {
    /// A copy of `tag` that shares no storage with the frame it came in.
    pub(crate) fn copy(&mut self, tag: &[u8]) -> Bytes {
        if self.last.as_ref() == tag {
            return self.last.clone();
        }
        if self.block.capacity() - self.block.len() < tag.len() {
            self.block = BytesMut::with_capacity(BLOCK.max(tag.len()));
        }
        self.block.extend_from_slice(tag);
        self.last = self.block.split().freeze();
        self.last.clone()
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

    #[test]
    fn a_repeated_tag_shares_its_copy() {
        let mut arena = TagArena::default();
        let frame = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let first = arena.copy(&frame);
        let again = arena.copy(&frame);
        assert_eq!(again, frame);
        assert_eq!(first.as_ptr(), again.as_ptr(), "one copy, shared");
        assert_ne!(again.as_ptr(), frame.as_ptr(), "not the frame's storage");
        let other = arena.copy(&[9; 8]);
        assert_eq!(other.as_ref(), &[9; 8]);
        assert_eq!(arena.copy(&frame), frame);
    }
}
