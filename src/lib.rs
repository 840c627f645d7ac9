//! # Reactor for Rust
//!
//! A dynamic, concurrent, dependency-resolving saga orchestrator.
//!
//! Describe a workflow as steps with arguments; the arguments form a graph.
//! Every step whose inputs are ready runs at once, up to a concurrency
//! limit. A failing step can compensate or retry with backoff; when it
//! fails for good, the completed steps are undone in reverse order (a
//! saga). Steps can halt the run (to resume later) and add steps to the
//! running graph.
//!
//! ## Overview
//!
//! - [`Reactor::builder`] declares inputs and [`step`]s; [`Builder::build`]
//!   plans and validates them into a [`Reactor`].
//! - [`Reactor::run`] starts a [`RunRequest`]; set options on it and
//!   `.await` it for the result, or call [`RunRequest::outcome`].
//! - Steps are closures ([`StepSpec::run`]) or types implementing [`Step`].
//! - [`ConcurrencyPool`] shares a concurrency limit across runs (and,
//!   [shared](ConcurrencyPool::shared), across worker processes);
//!   [`Limit`] limits a step per key or per period.
//! - [`Middleware`] sees every [`Event`] of a run and hooks into its start
//!   and end.
//!
//! ## Where to go next
//!
//! - The step kinds: [`kinds`] (`map`, `compose`, `switch`, `group`,
//!   `around`, `recurse`, `template`, `collect`, `transform`, ...).
//! - Telemetry: [`telemetry`] (metrics names and labels, spans, event
//!   handlers); [`Recording`] and [`mermaid`] for timelines and diagrams.
//! - Durable runs, which survive a crash of their process: [`durable`]
//!   (the runtime, recovery, runs by id) over a [`journal`] (the records,
//!   the `Store` trait, SQLite and in-memory stores).
//! - The command line for your binary: `reactor::cli` (feature `cli`, on
//!   by default).
//! - The examples: every code example of Elixir Reactor's performance
//!   guide is a program in this repository's `examples/` directory
//!   (`cargo run --example data_processor`); the README lists them, with
//!   a table mapping the Elixir idioms to ours.
//!
//! ```
//! use reactor::{input, result, step, Inputs, Reactor};
//!
//! # #[tokio::main] async fn main() -> Result<(), reactor::Error> {
//! let reactor = Reactor::builder("sum_and_double")
//!     .input("x")
//!     .add(step("a").argument("x", input("x")).run_sync(|args, _| {
//!         Ok(args.get::<i64>("x")? + 1)
//!     }))
//!     .add(step("b").argument("x", input("x")).run(|args, _| async move {
//!         Ok(args.get::<i64>("x")? + 2)
//!     }))
//!     .add(step("sum").argument("a", result("a")).argument("b", result("b")).run_sync(|args, _| {
//!         Ok(args.get::<i64>("a")? + args.get::<i64>("b")?)
//!     }))
//!     .returns("sum")
//!     .build()?;
//! let out = reactor.run(Inputs::new().with("x", 10_i64)).await?;
//! assert_eq!(*out.get::<i64>()?, 23);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod argument;
mod builder;
#[cfg(feature = "cli")]
pub mod cli;
mod codec;
mod context;
pub mod durable;
mod error;
mod event;
pub mod executor;
pub mod journal;
pub mod kinds;
pub mod limit;
pub mod mermaid;
mod middleware;
mod name;
mod planner;
mod pool;
mod reactor;
mod recording;
mod step;
pub mod telemetry;
mod value;

pub use argument::{input, result, value, ArgumentSpec, Arguments, Source};
pub use async_trait::async_trait;
pub use builder::Builder;
pub use context::Context;
pub use error::{BoxError, Error, ErrorClass, Phase, Reason, RunError, StepError, StepErrorKind};
pub use event::{Event, EventKind};
pub use executor::{
    CompletedRun, HaltedRun, RunOutcome, RunRequest, RunState, UndoRecord, Unfinished, MAX_NESTING,
};
pub use limit::Limit;
pub use mermaid::{Direction, MermaidOptions};
pub use middleware::{Middleware, RunInfo};
pub use name::Name;
pub use pool::adaptive::Concurrency;
pub use pool::{ConcurrencyPool, Permit};
pub use reactor::{Inputs, Reactor};
pub use recording::{Recording, StepRecord, StepState};
pub use step::{
    step, Backoff, Compensation, Guard, IntoOutcome, IntoUndoOutcome, Outcome, Step, StepSpec,
    UndoOutcome,
};
pub use value::{Navigate, PathKey, Value, ValueMap};

/// The README's example, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
