//! The service, method and reply names a frame decoder hands out without
//! allocating: [`KnownNames`].

use crate::name::Name;

/// A small set of names that frame decoding reuses instead of allocating.
///
/// Every envelope names its service and method (and a request its reply
/// address), and a connection carries the same few names call after call.
/// [`frame::decode_with`](crate::frame::decode_with) looks each name it
/// reads up here first: a known one becomes a clone of the stored [`Name`]
/// (a pointer copy, or a reference count), with no allocation and no UTF-8
/// check of its bytes (they equal a name's, which is valid UTF-8).
///
/// A decoder adds the names of each frame it accepts, so one connection's
/// set fills with its names after its first calls. The set holds at most
/// [`KnownNames::CAPACITY`] names and is searched by comparison, which for a
/// few names costs less than hashing one. A peer that sends many names (a
/// hostile one, say) fills it: names past it are decoded as before, one
/// allocation each, so the bound caps memory, never correctness.
///
/// ```
/// use rpc_core::frame::{self, FrameLimits};
/// use rpc_core::{ContentType, Envelope, Header, KnownNames, Name};
///
/// let limits = FrameLimits::default();
/// let request = Envelope {
///     header: Header::request("calc".into(), "add".into(), ContentType::Json),
///     body: Vec::new(),
/// };
/// let mut wire = Vec::new();
/// frame::encode(&request, &mut wire, &limits)?;
///
/// // A server knows the services it serves; it learns the methods called.
/// let mut names = KnownNames::new();
/// names.insert(Name::from_static("calc"));
/// let (decoded, _) = frame::decode_with(&wire, &limits, &mut names)?;
/// assert_eq!(decoded, request);
/// assert!(names.get(b"add").is_some());
/// # Ok::<(), frame::FrameError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct KnownNames {
    names: Vec<Name>,
}

impl KnownNames {
    /// The most names a set holds: a server's services and their methods,
    /// a client's replies' names, with room to spare.
    pub const CAPACITY: usize = 64;

    /// An empty set; costs no allocation.
    pub const fn new() -> Self {
        KnownNames { names: Vec::new() }
    }

    /// The known name spelled by `bytes`, if there is one.
    #[inline]
    pub fn get(&self, bytes: &[u8]) -> Option<&Name> {
        self.names.iter().find(|name| name.as_bytes() == bytes)
    }

    /// Adds `name`; returns whether it was added (not when it is already
    /// known, or when the set is full).
    pub fn insert(&mut self, name: Name) -> bool {
        if self.names.len() >= Self::CAPACITY || self.get(name.as_bytes()).is_some() {
            return false;
        }
        self.names.push(name);
        true
    }

    /// The number of names known.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl<N: Into<Name>> FromIterator<N> for KnownNames {
    /// The first [`CAPACITY`](Self::CAPACITY) distinct names.
    fn from_iter<I: IntoIterator<Item = N>>(iter: I) -> Self {
        let mut known = KnownNames::new();
        for name in iter {
            known.insert(name.into());
        }
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_by_their_bytes() {
        let known: KnownNames = ["calc", "add"].into_iter().collect();
        assert_eq!(known.get(b"add"), Some(&Name::from_static("add")));
        assert_eq!(known.get(b"ad"), None);
        assert_eq!(known.get(b"addx"), None);
        assert_eq!(known.get(b""), None);
    }

    #[test]
    fn holds_each_name_once_and_at_most_capacity() {
        let mut known = KnownNames::new();
        assert!(known.is_empty());
        assert!(known.insert(Name::from_static("a")));
        assert!(!known.insert(Name::from(String::from("a"))));
        for i in 1..KnownNames::CAPACITY {
            assert!(known.insert(Name::from(format!("name-{i}"))));
        }
        assert_eq!(known.len(), KnownNames::CAPACITY);
        assert!(!known.insert(Name::from_static("one too many")));
        assert_eq!(known.get(b"one too many"), None);
    }
}
