//! Cheap, clonable names for services, methods and addresses.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A string that is either `'static` or shared, so cloning it never allocates.
///
/// Generated code names services and methods with `&'static str`; names read
/// off the wire are shared. Every envelope carries several of them, so a clone
/// on the hot path must stay a pointer copy.
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A name from a string literal; costs nothing.
    pub const fn from_static(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Self {
        Name::from_static(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Name(Repr::Shared(name.into()))
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Self {
        Name(Repr::Shared(name))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an envelope goes: a service's request queue or a client's reply inbox.
///
/// Transports tell the two apart by the envelope's [`Kind`](crate::Kind):
/// requests and oneway calls go to services, replies go to inboxes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address(Name);

impl Address {
    /// An address from any name.
    pub fn new(name: impl Into<Name>) -> Self {
        Address(name.into())
    }

    /// An address from a string literal; costs nothing.
    pub const fn from_static(name: &'static str) -> Self {
        Address(Name::from_static(name))
    }

    /// The address as text (a queue or routing key name).
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The address as a [`Name`].
    pub fn name(&self) -> &Name {
        &self.0
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_shared_names_compare_by_text() {
        let a = Name::from_static("calc.add");
        let b = Name::from(String::from("calc.add"));
        assert_eq!(a, b);
        assert_eq!(a, "calc.add");
        assert_ne!(a, Name::from_static("calc.sub"));
    }
}
