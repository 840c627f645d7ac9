//! Durable runs: a run whose progress is journalled, so that it survives
//! a crash of its process, and can be found, resumed or cancelled by id.
//!
//! # How
//!
//! - Register reactors with a [`Runtime`] over a
//!   [`Store`](crate::journal::Store) ([`SqliteStore`](crate::journal::SqliteStore)
//!   by default, [`Runtime::open`]). Every input must be declared with
//!   its type ([`Builder::input_as`](crate::Builder::input_as)) and every
//!   step with the type of its result
//!   ([`StepSpec::output`](crate::StepSpec::output)): registering a
//!   reactor that lacks one is an error naming it.
//! - [`Runtime::start`] journals the run's start (its inputs, its
//!   reactor's definition and hash), then runs it. Each completed step's
//!   result is journalled before any step that depends on it starts (one
//!   commit per level of the graph, shared by concurrent runs); an
//!   unwinding saga journals its plan, then each undo.
//! - After a crash, [`Runtime::recover`] takes up every unfinished run:
//!   completed steps do not run again; a step that may have started (its
//!   dependencies were done, its completion was not journalled) runs
//!   again, so steps run **at least once**: give external systems
//!   [`Context::idempotency_key`](crate::Context::idempotency_key). An
//!   interrupted unwinding goes on: each step still to undo is undone
//!   (an undo interrupted by the crash runs again, so undo must be
//!   idempotent too). Halted runs wait for [`Runtime::resume`].
//! - One driver per run: every journal write carries the run's epoch,
//!   and the store refuses a write of an epoch that no longer owns the run
//!   ([`fence`](crate::journal::fence)); the refused driver stops without
//!   undoing, leaving the run to its new owner. [`Runtime::open`] locks its
//!   data directory, so two processes do not take up the same runs.
//! - A run journalled under another definition of its reactor is refused
//!   with [`Error::DefinitionChanged`](crate::Error::DefinitionChanged),
//!   naming the first change.
//!
//! - Steps emitted at run time ([`Outcome::OkWithSteps`](crate::Outcome::OkWithSteps))
//!   are journalled as data: made by a step kind registered with
//!   [`Runtime::register_step`] ([`StepRegistry::make`]), journalled as
//!   the kind and its parameters with their emitter's completion, and
//!   rebuilt by the kind after a crash. An emitted step no registered kind
//!   rebuilds fails its emitter, naming it. A `switch` journals the branch
//!   it took, and rebuilds that branch's steps from it.
//!
//! - A run nested in a step (`compose`, `recurse`, or a user's run
//!   [`within`](crate::RunRequest::within) a step) is a durable run of its
//!   own, in the same store, with the id `parent/step.attempt.n`: a step
//!   run again after a crash takes up its nested runs where they stood, and
//!   a completed one is undone from its journal, each of its steps once.
//!   Its reactor needs no registration (a `compose`'s or `recurse`'s is
//!   checked with its parent's); [`Runtime::recover`] leaves nested runs to
//!   their parents, and run ids may not contain `/`.
//! - A `map`'s elements are durable runs of their own,
//!   `parent/map.attempt.e<index>`: their inputs (the element, the map's
//!   other arguments) are not journalled but given again by the map from
//!   its journalled arguments. A map run again after a crash keeps the
//!   elements that completed and takes up those in flight; a completed
//!   map is undone from its elements' journals. Its result is journalled
//!   as a list of its returned step's (or, with a sink, as their number).
//! - A `group`'s or `around`'s nested steps run as a durable run of their
//!   own (`parent/step.attempt.n`), their inputs (the step's arguments)
//!   given again by the step, like a map's elements. A group's result
//!   journals as its steps' results by name; an around's, or a group's
//!   with `after_all`, as its declared `.output::<T>()`. Taken up after a
//!   crash, a group undoes its nested run as rebuilt from the steps its
//!   `before_all` chooses again, an around from its declared steps and
//!   arguments (its function's own choices are not journalled: a nested
//!   run of other steps is refused as a changed definition, naming it).
//!
//! # Not journalled
//!
//! A step that keeps an undo value apart from its result (`OkWithUndo`,
//! other than a composite's nested runs) fails with an error saying so.
//! Context values are not journalled: a recovered run gets those of the
//! runtime taking it up.

mod definition;
mod nested;
mod recover;
mod registry;
mod runtime;
mod state;
mod worker;

pub use registry::StepRegistry;
pub use runtime::{Recovery, Runtime, Start};
pub use worker::{Worker, WorkerReport};
