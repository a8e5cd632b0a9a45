//! Progress bars and spinners on standard error, for every step that can take long: import,
//! export, verify, maintenance, backups, restores and migrations.
//!
//! **Invariant:** nothing is drawn unless standard error is a terminal (indicatif's
//! `ProgressDrawTarget::stderr` hides itself otherwise), nor with `-q`; so scripts, pipes and
//! tests see exactly the command's output. Where the library reports no progress, a spinner
//! names the step and shows the time it has taken.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Set by `-q`: draw nothing.
static IS_QUIET: AtomicBool = AtomicBool::new(false);

/// How often a spinner turns.
const SPINNER_TICK: Duration = Duration::from_millis(120);

/// Hides every bar and spinner of the process (`-q`).
pub fn set_quiet(is_quiet: bool) {
    IS_QUIET.store(is_quiet, Ordering::Relaxed);
}

/// Whether bars are drawn at all: standard error is a terminal and `-q` was not given. Lets a
/// command skip work (counting records) that only a bar needs.
pub fn is_drawn() -> bool {
    !target().is_hidden()
}

/// Standard error when it is a terminal and `-q` was not given; else nowhere.
fn target() -> ProgressDrawTarget {
    if IS_QUIET.load(Ordering::Relaxed) {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar of `total` steps (or a spinner when `None`) drawn with an indicatif `template`.
pub fn bar(template: &str, total: Option<u64>) -> ProgressBar {
    labelled(template, total, "")
}

/// As [`bar`], with `{prefix}` set before anything is drawn.
fn labelled(template: &str, total: Option<u64>, label: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label);
    bar.set_draw_target(target());
    bar
}

/// A bar of `total` items labelled `label` (a total learned later goes to `set_length`):
/// `label message [=====>    ] 120/400 (eta 3s)`.
pub fn counter(label: &'static str, total: u64) -> ProgressBar {
    labelled(
        "{prefix} {msg} [{bar:30}] {pos}/{len} (eta {eta})",
        Some(total),
        label,
    )
}

/// A spinner naming a step of unknown length, with the time it has taken: `⠋ verifying [4s]`.
pub fn spinner(step: impl Into<Cow<'static, str>>) -> ProgressBar {
    let spinner = bar("{spinner} {msg} [{elapsed}]", None);
    spinner.set_message(step);
    if !spinner.is_hidden() {
        spinner.tick();
        spinner.enable_steady_tick(SPINNER_TICK);
    }
    spinner
}

/// Awaits `work` under a [`spinner`] named `step`, cleared when it ends.
pub async fn while_running<T>(
    step: impl Into<Cow<'static, str>>,
    work: impl Future<Output = T>,
) -> T {
    let spinner = spinner(step);
    let result = work.await;
    spinner.finish_and_clear();
    result
}
