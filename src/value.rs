//! Values: the type-erased, reference-counted data that flows between steps.
//!
//! A step's result is stored once as a [`Value`] and shared by every consumer:
//! cloning a `Value` clones an [`Arc`], never the data. Typed access
//! ([`Value::get`], [`Value::downcast_ref`]) checks the type at run time and
//! names both types when they differ.
//!
//! Sub-paths (`result("step").at("a").at(0)`) navigate [`serde_json::Value`]
//! objects and arrays, [`ValueMap`]s, `Vec<Value>`s, `HashMap<String, Value>`s
//! and any type stored with [`Value::navigable`] (implement [`Navigate`]).

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::error::Error;
use crate::name::Name;

/// A map of named values: inputs, step contexts, `collect` results.
pub type ValueMap = BTreeMap<String, Value>;

type Navigator = fn(&(dyn Any + Send + Sync), &PathKey) -> Option<Value>;

/// What a value knows of its type, one static per type (so a `Value` is
/// two words and a pointer).
struct Meta {
    type_name: fn() -> &'static str,
    navigator: Option<Navigator>,
}

struct MetaOf<T>(std::marker::PhantomData<T>);

impl<T: 'static> MetaOf<T> {
    const PLAIN: Meta = Meta {
        type_name: std::any::type_name::<T>,
        navigator: None,
    };
}

impl<T: Navigate + 'static> MetaOf<T> {
    const NAVIGABLE: Meta = Meta {
        type_name: std::any::type_name::<T>,
        navigator: Some(navigate_as::<T>),
    };
}

fn navigate_as<T: Navigate + 'static>(
    any: &(dyn Any + Send + Sync),
    key: &PathKey,
) -> Option<Value> {
    any.downcast_ref::<T>().and_then(|t| t.field(key))
}

/// A shared, type-erased value.
///
/// # Examples
///
/// ```
/// use reactor::Value;
///
/// let v = Value::new(42_i64);
/// assert_eq!(*v.get::<i64>().unwrap(), 42);
/// let err = v.get::<String>().unwrap_err();
/// assert!(err.to_string().contains("i64"));
/// // A Value wrapped again stays the same value.
/// assert!(Value::new(v.clone()).ptr_eq(&v));
/// ```
#[derive(Clone)]
pub struct Value {
    inner: Arc<dyn Any + Send + Sync>,
    meta: &'static Meta,
}

impl Value {
    /// Wraps `value`. Wrapping a `Value` returns it unchanged.
    pub fn new<T: Send + Sync + 'static>(value: T) -> Value {
        let mut slot = Some(value);
        if let Some(inner) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Value>>() {
            return inner.take().expect("slot is filled above");
        }
        let value = slot.expect("slot is filled above");
        Value {
            inner: Arc::new(value),
            meta: &MetaOf::<T>::PLAIN,
        }
    }

    /// Wraps a value whose fields can be reached by argument sub-paths.
    ///
    /// ```
    /// use reactor::{Navigate, PathKey, Value};
    ///
    /// struct Date { year: i32 }
    /// impl Navigate for Date {
    ///     fn field(&self, key: &PathKey) -> Option<Value> {
    ///         match key.as_key()? { "year" => Some(Value::new(self.year)), _ => None }
    ///     }
    /// }
    /// let v = Value::navigable(Date { year: 1985 });
    /// assert_eq!(*v.navigate(&"year".into()).unwrap().get::<i32>().unwrap(), 1985);
    /// ```
    pub fn navigable<T: Navigate + Send + Sync + 'static>(value: T) -> Value {
        Value {
            inner: Arc::new(value),
            meta: &MetaOf::<T>::NAVIGABLE,
        }
    }

    /// Wraps a JSON value (navigable by sub-paths).
    pub fn json(value: serde_json::Value) -> Value {
        Value::new(value)
    }

    /// The unit value, returned by steps with nothing to say.
    pub fn unit() -> Value {
        Value::new(())
    }

    /// The Rust type name of the stored value.
    pub fn type_name(&self) -> &'static str {
        (self.meta.type_name)()
    }

    /// Whether the stored value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        (*self.inner).type_id() == TypeId::of::<T>()
    }

    /// The stored value, if it is a `T`.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }

    /// The stored value as a `T`, or an error naming both types.
    pub fn get<T: 'static>(&self) -> Result<&T, Error> {
        self.downcast_ref::<T>().ok_or_else(|| Error::ValueType {
            expected: std::any::type_name::<T>(),
            actual: self.type_name(),
        })
    }

    /// Takes the stored `T` out, cloning it only if the value is shared.
    pub fn take<T: Clone + Send + Sync + 'static>(self) -> Result<T, Error> {
        let actual = self.type_name();
        match self.inner.downcast::<T>() {
            Ok(arc) => Ok(Arc::try_unwrap(arc).unwrap_or_else(|shared| (*shared).clone())),
            Err(_) => Err(Error::ValueType {
                expected: std::any::type_name::<T>(),
                actual,
            }),
        }
    }

    /// Whether two values share the same allocation.
    pub fn ptr_eq(&self, other: &Value) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.inner), Arc::as_ptr(&other.inner))
    }

    /// Looks up one sub-path key; `None` when the key is absent or the value
    /// cannot be navigated.
    pub fn navigate(&self, key: &PathKey) -> Option<Value> {
        if let Some(nav) = self.meta.navigator {
            return nav(&*self.inner, key);
        }
        if let Some(json) = self.downcast_ref::<serde_json::Value>() {
            let found = match key {
                PathKey::Key(k) => json.get(&**k),
                PathKey::Index(i) => json.get(*i),
            };
            return found.cloned().map(Value::json);
        }
        if let Some(map) = self.downcast_ref::<ValueMap>() {
            return map.get(key.as_key()?).cloned();
        }
        if let Some(map) = self.downcast_ref::<HashMap<String, Value>>() {
            return map.get(key.as_key()?).cloned();
        }
        if let Some(list) = self.downcast_ref::<Vec<Value>>() {
            return list.get(key.as_index()?).cloned();
        }
        None
    }

    /// Whether [`Value::navigate`] can look inside this value at all.
    pub fn is_navigable(&self) -> bool {
        self.meta.navigator.is_some()
            || self.is::<serde_json::Value>()
            || self.is::<ValueMap>()
            || self.is::<HashMap<String, Value>>()
            || self.is::<Vec<Value>>()
    }
}

/// Calls the macro `$m` with the standard scalar types (`bool`, `char`,
/// the integers and floats, `String`, `&'static str`) and any `$extra`:
/// the one list of the types the engine shows as themselves (debug
/// output, templates, the command line's JSON).
macro_rules! with_scalar_types {
    ($m:ident $(, $extra:ty)* $(,)?) => {
        $m!(
            bool, char, i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize,
            f32, f64, String, &'static str $(, $extra)*
        )
    };
}
pub(crate) use with_scalar_types;

/// The standard scalar types, strings, `Name`, JSON, `Value` itself, and
/// `Vec`s and `Option`s of those, `ValueMap`s and `HashMap<String, Value>`s
/// show their `Debug` form; any other type shows as `<its type name>`.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        macro_rules! try_debug {
            ($($t:ty),*) => {$(
                if let Some(v) = self.downcast_ref::<$t>() { return fmt::Debug::fmt(v, f); }
            )*};
        }
        macro_rules! with_containers {
            ($($t:ty),*) => {
                try_debug!($($t, Vec<$t>, Option<$t>),*);
            };
        }
        with_scalar_types!(with_containers, (), Name, serde_json::Value, Value);
        try_debug!(ValueMap, HashMap<String, Value>);
        write!(f, "<{}>", self.type_name())
    }
}

/// Fields of a user type, reachable by argument sub-paths.
pub trait Navigate {
    /// The value at `key`, if there is one.
    fn field(&self, key: &PathKey) -> Option<Value>;
}

/// One step of a sub-path: a map key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathKey {
    /// A map key or field name.
    Key(Name),
    /// A list index.
    Index(usize),
}

impl PathKey {
    /// The key, if this is a key.
    pub fn as_key(&self) -> Option<&str> {
        match self {
            PathKey::Key(k) => Some(k),
            PathKey::Index(_) => None,
        }
    }

    /// The index, if this is an index.
    pub fn as_index(&self) -> Option<usize> {
        match self {
            PathKey::Index(i) => Some(*i),
            PathKey::Key(_) => None,
        }
    }
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKey::Key(k) => write!(f, "{k:?}"),
            PathKey::Index(i) => write!(f, "{i}"),
        }
    }
}

impl From<&str> for PathKey {
    fn from(k: &str) -> Self {
        PathKey::Key(k.into())
    }
}

impl From<String> for PathKey {
    fn from(k: String) -> Self {
        PathKey::Key(k.into())
    }
}

impl From<usize> for PathKey {
    fn from(i: usize) -> Self {
        PathKey::Index(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths_navigate_objects_and_arrays() {
        let v = Value::json(serde_json::json!({"a": {"b": [10, 20]}}));
        let b = v.navigate(&"a".into()).unwrap();
        let second = b
            .navigate(&"b".into())
            .unwrap()
            .navigate(&1.into())
            .unwrap();
        assert_eq!(
            second.get::<serde_json::Value>().unwrap(),
            &serde_json::json!(20)
        );
        assert!(v.navigate(&"zz".into()).is_none());
    }

    #[test]
    fn value_maps_and_lists_navigate() {
        let mut m = ValueMap::new();
        m.insert("k".into(), Value::new(vec![Value::new(1_i64)]));
        let v = Value::new(m);
        let inner = v
            .navigate(&"k".into())
            .unwrap()
            .navigate(&0.into())
            .unwrap();
        assert_eq!(*inner.get::<i64>().unwrap(), 1);
        assert!(!Value::new(5_u8).is_navigable());
    }

    #[test]
    fn take_clones_only_when_shared() {
        let v = Value::new(String::from("x"));
        let w = v.clone();
        assert_eq!(v.take::<String>().unwrap(), "x");
        assert_eq!(w.take::<String>().unwrap(), "x");
        assert!(Value::new(1_i32).take::<i64>().is_err());
    }
}
