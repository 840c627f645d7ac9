//! [`Name`]: the name of a step, input or argument.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use ecow::EcoString;

/// The name of a step, input or argument.
///
/// Cheap to clone. On 64-bit little-endian targets a name takes 16 bytes
/// and holds up to 15 bytes of text inline, so declaring a large reactor
/// with short names allocates nothing for them; a longer name is one
/// reference-counted copy, shared by its clones. (A step, each of its
/// arguments and each argument's source hold a name, so their size is
/// what a million-step reactor's memory is mostly made of.)
///
/// # Examples
///
/// ```
/// use reactor::Name;
///
/// let a = Name::from("fetch_profiles");
/// let b = Name::from(format!("s{}", 42));
/// assert_eq!(&*a, "fetch_profiles");
/// assert_eq!(b, "s42");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(EcoString);

/// Whether `name` is one the engine made for itself (a map's element
/// input, a group's gathering step, ...: they start with `__`), which
/// diagrams, descriptions and progress bars leave out.
pub(crate) fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(EcoString::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name(EcoString::from(s.as_str()))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(EcoString::from(s))
    }
}

impl From<Box<str>> for Name {
    fn from(s: Box<str>) -> Name {
        Name(EcoString::from(&*s))
    }
}

impl From<Arc<str>> for Name {
    fn from(s: Arc<str>) -> Name {
        Name(EcoString::from(&*s))
    }
}

impl From<&Name> for Name {
    fn from(s: &Name) -> Name {
        s.clone()
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}
