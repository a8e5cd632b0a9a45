//! Exact JSON: input values are stored as they were written, or refused.
//!
//! serde_json (without its `arbitrary_precision` feature, which would change number handling
//! for every user of the library) keeps a number as an `i64`, a `u64` or an `f64`, and an object
//! as a map: `18446744073709551616` would become `1.8446744073709552e19`, `1e-400` would become
//! `0.0`, and `{"a":1,"a":2}` would lose its first `a`. [`check_exact`] scans the text of a value
//! that serde_json accepted and refuses, naming the place, any number that would not come back
//! as the same decimal number and any object with a duplicate key.
//!
//! [`pretty`] indents JSON text without parsing its numbers, so that a stored value prints
//! exactly as stored, with or without `--pretty`.

mod exact;
mod number;
mod pretty;

pub use exact::check_exact;
pub use pretty::{one_line_raw, pretty};
