//! The documentation's walkthroughs, run for real. A walkthrough is a `console` block of
//! README.md or a page under `docs/` that follows the HTML comment `<!-- walkthrough: NAME -->`
//! (readers do not see it): `$ ` lines are commands, the lines after one are what it printed.
//! Blocks with one name form one walkthrough, run in one shell in the order they appear, so
//! prose can sit between its steps. [`parse`] reads them, [`session`] runs one in `bash` with
//! the demo first on `PATH`, and [`compare`] holds what ran against what the page shows.

pub mod compare;
pub mod links;
pub mod normalise;
pub mod parse;
pub mod session;

pub use compare::{compare, Mismatch};
pub use parse::{walkthrough, Step, Walkthrough};
pub use session::{run, Substitution};
