//! `strongbox completions SHELL`: a shell completion script, generated from the command line's
//! definition (clap_complete), on standard output.

use crate::output::Output;

/// Options of `strongbox completions SHELL`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash (source it, or put it in /etc/bash_completion.d/), zsh (a file `_strongbox`
    /// in a directory of $fpath), fish (~/.config/fish/completions/strongbox.fish), elvish or
    /// powershell.
    pub shell: clap_complete::Shell,
}

/// Prints the completion script.
///
/// # Errors
/// When standard output is closed or full.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = crate::cli::command();
    // Written into memory first: the generator cannot report a failed write.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "strongbox", &mut script);
    let mut out = Output::stdout();
    out.write_all(&script)?;
    out.finish()
}
