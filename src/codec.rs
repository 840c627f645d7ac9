//! Codecs: how a [`Value`] crosses a durable run's journal.
//!
//! Values are type-erased, so the engine cannot serialize one on its own.
//! A step declares the type of its result with
//! [`StepSpec::output`](crate::StepSpec::output), an input with
//! [`Builder::input_as`](crate::Builder::input_as): either records a
//! [`Codec`] for that type (serde, as JSON). Registering a reactor with a
//! durable [`Runtime`](crate::durable::Runtime) refuses one whose step or
//! input has none, naming it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use std::sync::Arc;

use crate::value::{Value, ValueMap};

/// Encodes and decodes values of one type, or of a map of named values
/// each of its own type, as JSON.
#[derive(Clone)]
pub(crate) struct Codec(Kind);

#[derive(Clone)]
enum Kind {
    /// One type, through serde.
    Typed(Typed),
    /// A [`ValueMap`] of named values (a `group`'s results), each through
    /// its own codec; journalled as a JSON object.
    Record(Arc<[(String, Codec)]>),
}

/// One type's functions.
#[derive(Clone, Copy)]
struct Typed {
    type_name: fn() -> &'static str,
    is: fn(&Value) -> bool,
    encode: fn(&Value) -> Result<serde_json::Value, Error>,
    decode: fn(serde_json::Value) -> Result<Value, Error>,
    /// The codec of a `Vec<Value>` whose items are of this type (a map's
    /// collected results), if this is not one already.
    list: Option<fn() -> Codec>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Codec").field(&self.type_name()).finish()
    }
}

impl Codec {
    /// The codec of `T`.
    pub(crate) fn of<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> Codec {
        Codec(Kind::Typed(Typed {
            type_name: std::any::type_name::<T>,
            is: Value::is::<T>,
            encode: |v| {
                let t = v.get::<T>()?;
                serde_json::to_value(t).map_err(|e| Error::Codec {
                    type_name: std::any::type_name::<T>(),
                    message: e.to_string(),
                })
            },
            decode: |json| {
                serde_json::from_value::<T>(json)
                    .map(Value::new)
                    .map_err(|e| Error::Codec {
                        type_name: std::any::type_name::<T>(),
                        message: e.to_string(),
                    })
            },
            list: Some(Codec::list_of::<T>),
        }))
    }

    /// The codec of a [`ValueMap`] holding some of `fields`, each value
    /// through its field's codec.
    pub(crate) fn record(fields: Vec<(String, Codec)>) -> Codec {
        Codec(Kind::Record(fields.into()))
    }

    /// The codec of a `Vec<Value>` of `T`s: a map's collected results,
    /// journalled as a JSON array.
    fn list_of<T: Serialize + DeserializeOwned + Send + Sync + 'static>() -> Codec {
        Codec(Kind::Typed(Typed {
            type_name: std::any::type_name::<Vec<T>>,
            is: Value::is::<Vec<Value>>,
            encode: |v| {
                let items = v.get::<Vec<Value>>()?;
                let each = Codec::of::<T>();
                items
                    .iter()
                    .map(|item| each.encode(item))
                    .collect::<Result<Vec<_>, _>>()
                    .map(serde_json::Value::Array)
            },
            decode: |json| {
                let items =
                    serde_json::from_value::<Vec<serde_json::Value>>(json).map_err(|e| {
                        Error::Codec {
                            type_name: std::any::type_name::<Vec<T>>(),
                            message: e.to_string(),
                        }
                    })?;
                let each = Codec::of::<T>();
                items
                    .into_iter()
                    .map(|item| each.decode(item))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::new)
            },
            list: None,
        }))
    }

    /// The codec of a `Vec<Value>` whose items are of this codec's type;
    /// `None` for a list or a record (a map returning a map's results).
    pub(crate) fn list(&self) -> Option<Codec> {
        match &self.0 {
            Kind::Typed(t) => t.list.map(|list| list()),
            Kind::Record(_) => None,
        }
    }

    /// The type this codec encodes.
    pub(crate) fn type_name(&self) -> &'static str {
        match &self.0 {
            Kind::Typed(t) => (t.type_name)(),
            Kind::Record(_) => std::any::type_name::<ValueMap>(),
        }
    }

    /// Whether `value` is of this codec's type.
    pub(crate) fn fits(&self, value: &Value) -> bool {
        match &self.0 {
            Kind::Typed(t) => (t.is)(value),
            Kind::Record(_) => value.is::<ValueMap>(),
        }
    }

    /// `value` as JSON; an error names both types if it is not of this
    /// codec's type.
    pub(crate) fn encode(&self, value: &Value) -> Result<serde_json::Value, Error> {
        let fields = match &self.0 {
            Kind::Typed(t) => return (t.encode)(value),
            Kind::Record(fields) => fields,
        };
        let mut object = serde_json::Map::new();
        for (name, item) in value.get::<ValueMap>()? {
            object.insert(name.clone(), field(fields, name)?.encode(item)?);
        }
        Ok(serde_json::Value::Object(object))
    }

    /// The value `json` encodes.
    pub(crate) fn decode(&self, json: serde_json::Value) -> Result<Value, Error> {
        let fields = match &self.0 {
            Kind::Typed(t) => return (t.decode)(json),
            Kind::Record(fields) => fields,
        };
        let serde_json::Value::Object(object) = json else {
            return Err(Error::Codec {
                type_name: self.type_name(),
                message: format!("expected an object, found `{json}`"),
            });
        };
        let mut map = ValueMap::new();
        for (name, item) in object {
            let value = field(fields, &name)?.decode(item)?;
            map.insert(name, value);
        }
        Ok(Value::new(map))
    }
}

/// The codec of a record's field `name`.
fn field<'a>(fields: &'a [(String, Codec)], name: &str) -> Result<&'a Codec, Error> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c)
        .ok_or_else(|| Error::Codec {
            type_name: std::any::type_name::<ValueMap>(),
            message: format!("`{name}` is none of its fields"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_types() {
        let c = Codec::of::<Vec<u32>>();
        let json = c.encode(&Value::new(vec![1_u32, 2])).unwrap();
        assert_eq!(json, serde_json::json!([1, 2]));
        let back = c.decode(json).unwrap();
        assert_eq!(back.get::<Vec<u32>>().unwrap(), &vec![1, 2]);
        let wrong = c.encode(&Value::new("x")).unwrap_err().to_string();
        assert!(
            wrong.contains("Vec<u32>") && wrong.contains("&str"),
            "{wrong}"
        );
        let bad = c.decode(serde_json::json!("x")).unwrap_err().to_string();
        assert!(bad.contains("Vec<u32>"), "{bad}");
    }

    #[test]
    fn lists_of_values_round_trip() {
        let c = Codec::of::<u32>().list().unwrap();
        assert!(c.list().is_none());
        let values = Value::new(vec![Value::new(1_u32), Value::new(2_u32)]);
        let json = c.encode(&values).unwrap();
        assert_eq!(json, serde_json::json!([1, 2]));
        let back = c.decode(json).unwrap();
        let items: Vec<u32> = back
            .get::<Vec<Value>>()
            .unwrap()
            .iter()
            .map(|v| *v.get::<u32>().unwrap())
            .collect();
        assert_eq!(items, [1, 2]);
        let mixed = Value::new(vec![Value::new(1_u32), Value::new("x")]);
        assert!(c.encode(&mixed).unwrap_err().to_string().contains("u32"));
    }
}
