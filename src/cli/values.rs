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

/// Turns a result into JSON, or says why it cannot.
pub(super) type OutputFn = Arc<dyn Fn(&Value) -> Result<Json, String> + Send + Sync>;

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
        if c.is_alphanumeric() || matches!(c, '_' | ':' | '{' | '}') {
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
/// values (a map step's collected outputs); any other type is converted as
/// by default.
pub(super) fn typed_output<T: Serialize + 'static>() -> OutputFn {
    Arc::new(|value: &Value| {
        to_json_with(value, &|v: &Value| {
            v.downcast_ref::<T>().map(|t| {
                serde_json::to_value(t).map_err(|e| {
                    format!(
                        "a `{}` that JSON cannot hold ({e})",
                        short_type_name(type_name::<T>())
                    )
                })
            })
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

/// How deep `[`/`{` may nest in inputs (as `serde_json`'s own limit), so
/// that hostile input cannot make the YAML parser crawl.
const MAX_NESTING: usize = 128;

/// The inputs given on the command line: a file's (`.json`, `.yaml`,
/// `.yml`, any case, or `-` for standard input in either), then each
/// `--input key=value` (its value read as JSON, else as a string; a value
/// that starts like a JSON array or object must be one).
pub(super) fn gather(
    file: Option<&Path>,
    pairs: &[String],
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<BTreeMap<String, Json>, String> {
    let mut given = BTreeMap::new();
    if let Some(path) = file {
        given = read_file(path, stdin)?;
    }
    let mut paired = std::collections::BTreeSet::new();
    for pair in pairs {
        let Some((key, text)) = pair.split_once('=') else {
            return Err(format!("--input `{pair}`: expected KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("--input `{pair}`: the KEY is empty"));
        }
        if !paired.insert(key.to_string()) {
            return Err(format!("--input `{key}` is given twice"));
        }
        let json = match serde_json::from_str(text) {
            Ok(json) => json,
            Err(e) if looks_like_json(text) => {
                return Err(format!("--input `{key}`: malformed JSON: {e}"));
            }
            Err(_) => Json::String(text.to_string()),
        };
        given.insert(key.to_string(), json);
    }
    Ok(given)
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with(['[', '{'])
}

/// The mapping of inputs in the file `path` (`-`: standard input).
fn read_file(
    path: &Path,
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<BTreeMap<String, Json>, String> {
    let (from, text, yaml) = if path == Path::new("-") {
        let text = stdin().map_err(|e| format!("standard input: {e}"))?;
        ("standard input".to_string(), text, None)
    } else {
        let from = format!("inputs file `{}`", path.display());
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let yaml = match ext.as_str() {
            "json" => false,
            "yaml" | "yml" => true,
            _ => return Err(format!("{from}: expected a .json, .yaml or .yml file")),
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{from}: {e}"))?;
        (from, text, Some(yaml))
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if nesting(text) > MAX_NESTING {
        return Err(format!("{from}: nested deeper than {MAX_NESTING} levels"));
    }
    // Standard input: JSON when it looks like JSON, else YAML.
    let yaml = yaml.unwrap_or_else(|| !looks_like_json(text));
    let parsed: Json = if yaml {
        serde_yaml_ng::from_str(text).map_err(|e| format!("{from}: malformed YAML: {e}"))?
    } else {
        serde_json::from_str(text).map_err(|e| format!("{from}: malformed JSON: {e}"))?
    };
    match parsed {
        Json::Object(map) => Ok(map.into_iter().collect()),
        // An empty YAML document.
        Json::Null => Ok(BTreeMap::new()),
        other => Err(format!(
            "{from}: expected a mapping of input names to values, got {}",
            json_kind(&other)
        )),
    }
}

/// The deepest nesting of `[` and `{` in `text` (quotes not considered:
/// an over-estimate, which only errs on the side of refusing).
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The reactor's inputs from what was given: each input present, none
/// unknown, each converted by its declared parser (else guessed).
pub(super) fn inputs_for(
    reactor: &Reactor,
    parsers: &BTreeMap<String, InputParser>,
    mut given: BTreeMap<String, Json>,
) -> Result<Inputs, String> {
    let name = reactor.name();
    if let Some(unknown) = parsers
        .keys()
        .find(|p| !reactor.input_names().any(|i| i == *p))
    {
        return Err(format!(
            "the command line declares input `{unknown}`, which reactor `{name}` does not have"
        ));
    }
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
/// `Vec`s, `Option`s and maps of those, as themselves (a 128-bit integer
/// beyond JSON's range as a string); any other type is an error naming it.
pub(super) fn to_json(value: &Value) -> Result<Json, String> {
    to_json_with(value, &|_| None)
}

type First<'a> = &'a dyn Fn(&Value) -> Option<Result<Json, String>>;

/// As [`to_json`], trying `first` on the value and on each nested value.
fn to_json_with(value: &Value, first: First<'_>) -> Result<Json, String> {
    if let Some(json) = first(value) {
        return json;
    }
    let nested = |v: &Value| to_json_with(v, first);
    let encode = |r: Result<Json, serde_json::Error>| {
        r.map_err(|e| {
            format!(
                "a `{}` that JSON cannot hold ({e})",
                short_type_name(value.type_name())
            )
        })
    };
    macro_rules! try_types {
        ($($t:ty),*) => {$(
            if let Some(v) = value.downcast_ref::<$t>() {
                return encode(serde_json::to_value(v));
            }
            if let Some(v) = value.downcast_ref::<Vec<$t>>() {
                return encode(serde_json::to_value(v));
            }
            if let Some(v) = value.downcast_ref::<Option<$t>>() {
                return encode(serde_json::to_value(v));
            }
        )*};
    }
    // Beyond what JSON numbers hold: as text.
    macro_rules! wide {
        ($($t:ty),*) => {$(
            if let Some(v) = value.downcast_ref::<$t>() {
                return Ok(serde_json::to_value(v).unwrap_or_else(|_| Json::String(v.to_string())));
            }
        )*};
    }
    wide!(i128, u128);
    crate::value::with_scalar_types!(try_types, (), Json);
    if let Some(v) = value.downcast_ref::<crate::Name>() {
        return Ok(Json::String(v.to_string()));
    }
    if let Some(v) = value.downcast_ref::<Value>() {
        return nested(v);
    }
    if let Some(items) = value.downcast_ref::<Vec<Value>>() {
        return items
            .iter()
            .map(nested)
            .collect::<Result<_, _>>()
            .map(Json::Array);
    }
    if let Some(map) = value.downcast_ref::<crate::ValueMap>() {
        return map
            .iter()
            .map(|(k, v)| Ok((k.clone(), nested(v)?)))
            .collect::<Result<_, String>>()
            .map(Json::Object);
    }
    if let Some(map) = value.downcast_ref::<std::collections::HashMap<String, Value>>() {
        let sorted: BTreeMap<&String, &Value> = map.iter().collect();
        return sorted
            .into_iter()
            .map(|(k, v)| Ok((k.clone(), nested(v)?)))
            .collect::<Result<_, String>>()
            .map(Json::Object);
    }
    Err(format!(
        "a `{}`, which has no JSON form here (declare it with Entry::output::<T>() for a T: Serialize)",
        short_type_name(value.type_name())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_read_json_else_strings() {
        let pairs = ["n=3", "s=hello", "list=[1,2]", "q=\"7\"", "e=a=b"].map(String::from);
        let given = gather(None, &pairs, || Ok(String::new())).unwrap();
        assert_eq!(given["n"], Json::from(3));
        assert_eq!(given["s"], Json::from("hello"));
        assert_eq!(given["list"], serde_json::json!([1, 2]));
        assert_eq!(given["q"], Json::from("7"));
        assert_eq!(given["e"], Json::from("a=b"));
        let bad = |pairs: &[&str]| {
            let pairs: Vec<String> = pairs.iter().map(|p| p.to_string()).collect();
            gather(None, &pairs, || Ok(String::new())).unwrap_err()
        };
        assert!(bad(&["novalue"]).contains("KEY=VALUE"));
        assert!(bad(&["=5"]).contains("the KEY is empty"));
        assert!(bad(&["a=1", "a=2"]).contains("given twice"));
        assert!(bad(&["a=[1,2"]).contains("`a`: malformed JSON"));
    }

    #[test]
    fn stdin_reads_json_or_yaml() {
        let json = gather(Some(Path::new("-")), &[], || Ok(r#"{"a": 1}"#.into())).unwrap();
        assert_eq!(json["a"], Json::from(1));
        let yaml = gather(Some(Path::new("-")), &[], || Ok("a: [x, y]\n".into())).unwrap();
        assert_eq!(yaml["a"], serde_json::json!(["x", "y"]));
        let err = gather(Some(Path::new("-")), &[], || Ok("[1, 2]".into())).unwrap_err();
        assert!(err.contains("expected a mapping"), "{err}");
        let err = gather(Some(Path::new("-")), &[], || Ok(r#"{"a": 1} x"#.into())).unwrap_err();
        assert!(err.contains("malformed JSON"), "{err}");
        let deep = format!("a: {}{}", "[".repeat(200), "]".repeat(200));
        let err = gather(Some(Path::new("-")), &[], || Ok(deep)).unwrap_err();
        assert!(err.contains("nested deeper than 128"), "{err}");
        let bom = gather(
            Some(Path::new("-")),
            &[],
            || Ok("\u{feff}{\"a\": 2}".into()),
        )
        .unwrap();
        assert_eq!(bom["a"], Json::from(2));
        assert!(gather(Some(Path::new("-")), &[], || Ok(String::new()))
            .unwrap()
            .is_empty());
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
            Ok(serde_json::json!([1, 2]))
        );
        let items = Value::new(vec![Value::new("a".to_string()), Value::new(2_i64)]);
        assert_eq!(to_json(&items), Ok(serde_json::json!(["a", 2])));
        assert_eq!(
            to_json(&Value::new(u128::MAX)),
            Ok(Json::from(u128::MAX.to_string()))
        );
        #[derive(Serialize)]
        struct Opaque;
        let listed = Value::new(vec![Value::new(Opaque)]);
        assert_eq!(
            typed_output::<Opaque>()(&listed),
            Ok(serde_json::json!([null]))
        );
        let err = to_json(&Value::new(Opaque)).unwrap_err();
        assert!(err.contains("`Opaque`, which has no JSON form"), "{err}");
        let keyed = Value::new(BTreeMap::from([((1_u8, 2_u8), 3_u8)]));
        let err = typed_output::<BTreeMap<(u8, u8), u8>>()(&keyed).unwrap_err();
        assert!(err.contains("JSON cannot hold"), "{err}");
    }
}
