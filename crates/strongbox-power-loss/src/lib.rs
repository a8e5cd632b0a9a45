//! Nothing to use here: this package holds the power-loss harness, `tests/power_loss.rs`
//! (see its docs), in a workspace of its own because its VFS crate needs libclang to build.
