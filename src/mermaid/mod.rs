//! Mermaid diagrams of a reactor: [`Reactor::to_mermaid`] draws its
//! definition, [`Reactor::to_mermaid_run`] the same annotated with what a
//! [`Recording`] saw of a run.
//!
//! This module owns the options and the text rules (identifiers, escaping,
//! styles); `draw` walks the steps. A diagram is a Mermaid `flowchart`:
//! inputs are parallelograms, steps rectangles (a ready-made kind's name on
//! a second line), constants hexagons, the returned step points at a
//! `return` terminal. Argument edges are solid (labelled with the
//! argument's name), `wait_for` edges dotted. Maps, compose, recurse,
//! switch (a subgraph per branch), group and around are subgraphs holding
//! their nested steps when expanded, single nodes otherwise.
//!
//! Node identifiers are generated (`n0`, `n1`, ...), so any step name is
//! safe; labels are quoted with Mermaid's entity codes for characters that
//! would end or change them.

mod draw;

use crate::reactor::Reactor;
use crate::recording::{Recording, StepState};

/// Which way a diagram flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Top to bottom (`TD`).
    #[default]
    TopDown,
    /// Bottom to top (`BT`).
    BottomUp,
    /// Left to right (`LR`).
    LeftRight,
    /// Right to left (`RL`).
    RightLeft,
}

impl Direction {
    fn code(self) -> &'static str {
        match self {
            Direction::TopDown => "TD",
            Direction::BottomUp => "BT",
            Direction::LeftRight => "LR",
            Direction::RightLeft => "RL",
        }
    }
}

/// How to draw a reactor.
///
/// # Examples
///
/// ```
/// use reactor::{Direction, MermaidOptions};
///
/// let options = MermaidOptions::new()
///     .direction(Direction::LeftRight)
///     .arguments(false)
///     .expand(false);
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct MermaidOptions {
    direction: Direction,
    arguments: bool,
    expand: bool,
    descriptions: bool,
    max_depth: usize,
}

impl Default for MermaidOptions {
    fn default() -> MermaidOptions {
        MermaidOptions {
            direction: Direction::TopDown,
            arguments: true,
            expand: true,
            descriptions: false,
            max_depth: 8,
        }
    }
}

impl MermaidOptions {
    /// Top-down, arguments shown, nested kinds expanded up to 8 deep.
    pub fn new() -> MermaidOptions {
        MermaidOptions::default()
    }

    /// Which way the diagram flows.
    pub fn direction(mut self, direction: Direction) -> MermaidOptions {
        self.direction = direction;
        self
    }

    /// Whether edges are labelled with argument names and constants drawn
    /// (when not, edges between the same two nodes are drawn once).
    pub fn arguments(mut self, show: bool) -> MermaidOptions {
        self.arguments = show;
        self
    }

    /// Whether nested kinds (map, compose, recurse, switch, group,
    /// around) are drawn as subgraphs of their steps.
    pub fn expand(mut self, expand: bool) -> MermaidOptions {
        self.expand = expand;
        self
    }

    /// Whether step and reactor descriptions are added to labels.
    pub fn descriptions(mut self, show: bool) -> MermaidOptions {
        self.descriptions = show;
        self
    }

    /// How many levels of nesting are expanded (deeper ones are single
    /// nodes); 0 expands none.
    pub fn max_depth(mut self, depth: usize) -> MermaidOptions {
        self.max_depth = depth;
        self
    }
}

impl Reactor {
    /// A Mermaid flowchart of this reactor.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactor::{input, result, step, MermaidOptions, Reactor};
    ///
    /// # fn main() -> Result<(), reactor::Error> {
    /// let reactor = Reactor::builder("greet")
    ///     .input("name")
    ///     .add(step("hello").argument("who", input("name")).run_sync(|_, _| Ok(())))
    ///     .add(step("log").argument("done", result("hello")).run_sync(|_, _| Ok(())))
    ///     .returns("log")
    ///     .build()?;
    /// let text = reactor.to_mermaid(&MermaidOptions::new());
    /// assert!(text.starts_with("flowchart TD"));
    /// assert!(text.contains(r#"["hello"]"#));
    /// assert!(text.contains(r#"-->|"who"|"#));
    /// # Ok(()) }
    /// ```
    pub fn to_mermaid(&self, options: &MermaidOptions) -> String {
        draw::diagram(self, options, None)
    }

    /// A Mermaid flowchart of this reactor annotated with a run: each
    /// step's state (done, failed, undone, skipped, halted, never ran...)
    /// as a colour and in its label, with how long it ran. Steps the run
    /// added while running are drawn in a subgraph of their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use reactor::{step, Inputs, MermaidOptions, Reactor, Recording};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
    /// let reactor = Reactor::builder("one")
    ///     .add(step("only").run_sync(|_, _| Ok(1_i64)))
    ///     .returns("only")
    ///     .build()?;
    /// let recording = Recording::new();
    /// reactor.run(Inputs::new()).middleware(Arc::new(recording.clone())).await?;
    /// let text = reactor.to_mermaid_run(&recording, &MermaidOptions::new());
    /// assert!(text.contains("class n0 done"));
    /// # Ok(()) }
    /// ```
    pub fn to_mermaid_run(&self, recording: &Recording, options: &MermaidOptions) -> String {
        draw::diagram(self, options, Some(recording))
    }
}

/// The class a state is drawn with: its label, as one word.
fn state_class(state: StepState) -> &'static str {
    match state {
        StepState::NeverRan => "neverRan",
        state => state.label(),
    }
}

/// The `classDef`s of an annotated diagram, one per state.
const CLASS_DEFS: [&str; 8] = [
    "done fill:#d4edda,stroke:#2e7d32",
    "failed fill:#f8d7da,stroke:#c62828,stroke-width:2px",
    "undone fill:#fff3cd,stroke:#b26a00",
    "skipped fill:#eeeeee,stroke:#757575,stroke-dasharray:4 2",
    "halted fill:#dbe9ff,stroke:#1565c0",
    "abandoned fill:#fde0c5,stroke:#e65100,stroke-dasharray:4 2",
    "running fill:#e1f5fe,stroke:#0277bd",
    "neverRan fill:#ffffff,stroke:#9e9e9e,color:#757575,stroke-dasharray:2 2",
];

/// `text` as the inside of a quoted Mermaid label: characters that would
/// end the label, start an entity or markup are entity codes, line breaks
/// become spaces.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters, with an ellipsis if it was longer.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_would_break_a_label() {
        assert_eq!(escape(r#"a"b#c<d>&`e"#), "a#quot;b#35;c#lt;d#gt;#amp;#96;e");
        assert_eq!(escape("two\nlines"), "two lines");
    }

    #[test]
    fn shortens_on_characters() {
        assert_eq!(shorten("ééééé", 3), "ééé…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
