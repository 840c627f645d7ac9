//! `{{ name }}` templates.

use crate::argument::Arguments;

/// A parsed template: literal text and `{{ name }}` placeholders.
///
/// # Examples
///
/// ```
/// use reactor::kinds::Template;
/// use reactor::{Arguments, Value};
///
/// let t = Template::parse("Hi {{ name }}, welcome to {{location}}!\n");
/// let args = Arguments::from_pairs("greet", [
///     ("name", Value::new("Marty McFly".to_string())),
///     ("location", Value::new("Hill Valley Mall")),
/// ]);
/// assert_eq!(t.render(&args).unwrap(), "Hi Marty McFly, welcome to Hill Valley Mall!\n");
/// ```
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug)]
enum Part {
    Text(String),
    Placeholder(String),
}

/// A placeholder that names no argument of the step.
#[derive(Debug, Clone, thiserror::Error)]
#[error("template placeholder `{{{{ {placeholder} }}}}` names no argument of step `{step}`")]
pub struct TemplateError {
    /// The step.
    pub step: String,
    /// The placeholder's name.
    pub placeholder: String,
}

impl Template {
    /// Parses `text`; an unclosed `{{` is kept as text.
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let Some(close) = rest[open + 2..].find("}}") else {
                break;
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let name = rest[open + 2..open + 2 + close].trim().to_string();
            parts.push(Part::Placeholder(name));
            rest = &rest[open + 2 + close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Template { parts }
    }

    /// The placeholders' names, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Placeholder(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Renders the template with `args`.
    pub fn render(&self, args: &Arguments) -> Result<String, TemplateError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Placeholder(name) => {
                    let value = args.value(name).ok_or_else(|| TemplateError {
                        step: args.step().to_string(),
                        placeholder: name.clone(),
                    })?;
                    out.push_str(&super::render(value));
                }
            }
        }
        Ok(out)
    }
}
