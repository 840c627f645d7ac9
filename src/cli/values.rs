//! Values crossing the command line: inputs read from `--input key=value`
//! and JSON or YAML files, converted to each input's declared type; a
//! result converted to JSON for printing.

use std::any::type_name;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::reactor::{Inputs, Reactor};
use crate::value::Value;

/// Turns one input's JSON into the value the reactor reads (an error says
/// what was expected).
pub(super) type InputParser = Arc<dyn Fn(Json) -> Result<Value, String> + Send + Sync>;

/// Turns a result into JSON.
pub(super) type OutputFn = Arc<dyn Fn(&Value) -> Json + Send + Sync>;

/// A parser for inputs of type `T`.
pub(super) fn typed_input<T: DeserializeOwned + Send + Sync + 'static>() -> InputParser {
    Arc::new(|json: Json| {
        let kind = json_kind(&json);
        serde_json::from_value::<T>(json)
            .map(Value::new)
            .map_err(|e| {
                format!(
                    "expected {}, got {kind} ({e})",
                    short_type_name(type_name::<T>())
                )
            })
    })
}

/// A type's name without its module paths: `Vec<u64>` for
/// `alloc::vec::Vec<u64>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment = String::new();
    for c in full.chars() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            segment.push(c);
        } else {
            out.push_str(segment.rsplit("::").next().unwrap_or(""));
            segment.clear();
            out.push(c);
        }
    }
    out.push_str(segment.rsplit("::").next().unwrap_or(""));
    out
}

/// A converter for results of type `T`, alone or inside lists and maps of
/// values (a map step's collected outputs); any other type is shown as
/// the default conversion would.
pub(super) fn typed_output<T: Serialize + 'static>() -> OutputFn {
    Arc::new(|value: &Value| {
        to_json_with(value, &|v: &Value| {
            v.downcast_ref::<T>()
                .map(|t| serde_json::to_value(t).unwrap_or_else(|e| Json::String(e.to_string())))
        })
    })
}

/// An undeclared input's value: a JSON string becomes a `String`, an
/// integer an `i64` (or `u64` above `i64::MAX`), another number an `f64`,
/// a boolean a `bool`, anything else stays a `serde_json::Value`.
fn guess(json: Json) -> Value {
    match json {
        Json::String(s) => Value::new(s),
        Json::Bool(b) => Value::new(b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::new(i),
            (None, Some(u), _) => Value::new(u),
            (_, _, Some(f)) => Value::new(f),
            _ => Value::json(Json::Number(n)),
        },
        other => Value::json(other),
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// The inputs given on the command line: a file's (`.json`, `.yaml`,
/// `.yml`, or `-` for standard input in either), then each
/// `--input key=value` (its value read as JSON, else as a string).
pub(super) fn gather(
    file: Option<&Path>,
    pairs: &[String],
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<BTreeMap<String, Json>, String> {
    let mut given = BTreeMap::new();
    if let Some(path) = file {
        let shown = path.display();
        let (text, yaml) = if path == Path::new("-") {
            (
                stdin().map_err(|e| format!("reading standard input: {e}"))?,
                None,
            )
        } else {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let yaml = match ext {
                "json" => false,
                "yaml" | "yml" => true,
                _ => {
                    return Err(format!(
                        "inputs file `{shown}`: expected a .json, .yaml or .yml file"
                    ))
                }
            };
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("inputs file `{shown}`: {e}"))?;
            (text, Some(yaml))
        };
        let parsed: Json = match yaml {
            Some(false) => serde_json::from_str(&text)
                .map_err(|e| format!("inputs file `{shown}`: malformed JSON: {e}"))?,
            Some(true) => serde_yaml_ng::from_str(&text)
                .map_err(|e| format!("inputs file `{shown}`: malformed YAML: {e}"))?,
            // Standard input: JSON, else YAML (which reads most JSON too).
            None => match serde_json::from_str(&text) {
                Ok(json) => json,
                Err(_) => serde_yaml_ng::from_str(&text)
                    .map_err(|e| format!("standard input: malformed JSON or YAML: {e}"))?,
            },
        };
        let Json::Object(map) = parsed else {
            return Err(format!(
                "inputs file `{shown}`: expected a mapping of input names to values, got {}",
                json_kind(&parsed)
            ));
        };
        given.extend(map);
    }
    for pair in pairs {
        let Some((key, text)) = pair.split_once('=') else {
            return Err(format!("--input `{pair}`: expected KEY=VALUE"));
        };
        let json = serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.to_string()));
        given.insert(key.trim().to_string(), json);
    }
    Ok(given)
}

/// The reactor's inputs from what was given: each input present, none
/// unknown, each converted by its declared parser (else guessed).
pub(super) fn inputs_for(
    reactor: &Reactor,
    parsers: &BTreeMap<String, InputParser>,
    mut given: BTreeMap<String, Json>,
) -> Result<Inputs, String> {
    let name = reactor.name();
    let mut inputs = Inputs::new();
    for input in reactor.input_names() {
        let Some(json) = given.remove(input) else {
            return Err(format!(
                "missing input `{input}` of reactor `{name}` (give it with --input {input}=VALUE)"
            ));
        };
        let value = match parsers.get(input) {
            Some(parse) => {
                parse(json).map_err(|e| format!("input `{input}` of reactor `{name}`: {e}"))?
            }
            None => guess(json),
        };
        inputs.0.insert(input.to_string(), value);
    }
    if let Some(extra) = given.keys().next() {
        let known: Vec<&str> = reactor.input_names().collect();
        return Err(format!(
            "unknown input `{extra}` of reactor `{name}` (its inputs: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    Ok(inputs)
}

/// A result as JSON: the standard scalars, strings, JSON values, and
/// `Vec`s, `Option`s and maps of those, as themselves; any other type as
/// its `Debug` text.
pub(super) fn to_json(value: &Value) -> Json {
    to_json_with(value, &|_| None)
}

/// As [`to_json`], trying `first` on the value and on each nested value.
fn to_json_with(value: &Value, first: &dyn Fn(&Value) -> Option<Json>) -> Json {
    if let Some(json) = first(value) {
        return json;
    }
    let nested = |v: &Value| to_json_with(v, first);
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Some(v) = value.downcast_ref::<$t>() {
                return serde_json::to_value(v).unwrap_or(Json::Null);
            }
            if let Some(v) = value.downcast_ref::<Vec<$t>>() {
                return serde_json::to_value(v).unwrap_or(Json::Null);
            }
            if let Some(v) = value.downcast_ref::<Option<$t>>() {
                return serde_json::to_value(v).unwrap_or(Json::Null);
            }
        )*};
    }
    crate::value::with_scalar_types!(try_types, (), Json);
    if let Some(v) = value.downcast_ref::<crate::Name>() {
        return Json::String(v.to_string());
    }
    if let Some(v) = value.downcast_ref::<Value>() {
        return nested(v);
    }
    if let Some(items) = value.downcast_ref::<Vec<Value>>() {
        return Json::Array(items.iter().map(nested).collect());
    }
    if let Some(map) = value.downcast_ref::<crate::ValueMap>() {
        return Json::Object(map.iter().map(|(k, v)| (k.clone(), nested(v))).collect());
    }
    if let Some(map) = value.downcast_ref::<std::collections::HashMap<String, Value>>() {
        let sorted: BTreeMap<&String, &Value> = map.iter().collect();
        return Json::Object(
            sorted
                .into_iter()
                .map(|(k, v)| (k.clone(), nested(v)))
                .collect(),
        );
    }
    Json::String(format!("{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_json_else_strings() {
        let pairs = ["n=3", "s=hello", "list=[1,2]", "q=\"7\""].map(String::from);
        let given = gather(None, &pairs, || Ok(String::new())).unwrap();
        assert_eq!(given["n"], Json::from(3));
        assert_eq!(given["s"], Json::from("hello"));
        assert_eq!(given["list"], serde_json::json!([1, 2]));
        assert_eq!(given["q"], Json::from("7"));
        let err = gather(None, &["novalue".to_string()], || Ok(String::new())).unwrap_err();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn stdin_reads_json_or_yaml() {
        let json = gather(Some(Path::new("-")), &[], || Ok(r#"{"a": 1}"#.into())).unwrap();
        assert_eq!(json["a"], Json::from(1));
        let yaml = gather(Some(Path::new("-")), &[], || Ok("a: [x, y]\n".into())).unwrap();
        assert_eq!(yaml["a"], serde_json::json!(["x", "y"]));
        let err = gather(Some(Path::new("-")), &[], || Ok("[1, 2]".into())).unwrap_err();
        assert!(err.contains("expected a mapping"), "{err}");
    }

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name(type_name::<Vec<u64>>()), "Vec<u64>");
        let map = short_type_name(type_name::<
            std::collections::BTreeMap<String, Vec<(u8, f64)>>,
        >());
        assert_eq!(map, "BTreeMap<String, Vec<(u8, f64)>>");
    }

    #[test]
    fn guesses_scalar_types() {
        assert!(guess(Json::from("x")).is::<String>());
        assert!(guess(Json::from(-3)).is::<i64>());
        assert!(guess(Json::from(u64::MAX)).is::<u64>());
        assert!(guess(Json::from(1.5)).is::<f64>());
        assert!(guess(Json::from(true)).is::<bool>());
        assert!(guess(serde_json::json!([1])).is::<Json>());
    }

    #[test]
    fn results_become_json() {
        assert_eq!(
            to_json(&Value::new(vec![1_u32, 2])),
            serde_json::json!([1, 2])
        );
        let items = Value::new(vec![Value::new("a".to_string()), Value::new(2_i64)]);
        assert_eq!(to_json(&items), serde_json::json!(["a", 2]));
        #[derive(Serialize)]
        struct Opaque;
        let listed = Value::new(vec![Value::new(Opaque)]);
        assert_eq!(typed_output::<Opaque>()(&listed), serde_json::json!([null]));
        let shown = to_json(&Value::new(Opaque));
        assert!(
            shown.as_str().is_some_and(|s| s.contains("Opaque")),
            "{shown}"
        );
    }
}
