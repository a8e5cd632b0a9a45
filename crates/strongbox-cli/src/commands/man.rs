//! `strongbox man`: the manual page, in roff, generated from the command line's definition
//! (clap_mangen), on standard output.

use anyhow::Context as _;

use crate::output::Output;

/// Prints the manual page (`strongbox man | man -l -` shows it; `strongbox man >
/// /usr/local/share/man/man1/strongbox.1` installs it).
///
/// # Errors
/// When standard output is closed or full.
pub fn run() -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(crate::cli::command())
        .render(&mut page)
        .context("render the manual page")?;
    let mut out = Output::stdout();
    out.write_all(&page)?;
    out.finish()
}
