//! The limit of open files: checked before the async runtime starts (tokio panics when it
//! cannot create its internal descriptors) and named in errors it probably caused.

use std::io;

/// Files the process must be able to open before the runtime starts: the runtime takes about
/// five (its poller, waker and signal pipe); the rest is margin.
const STARTUP_FILES: usize = 12;

/// A limit of open files below this is named in the hint of an error that may come from it.
/// A store needs about 10 files plus 2 per read connection.
const COMFORTABLE_LIMIT: u64 = 64;

/// `EMFILE` and `ENFILE`, the same numbers on Linux, macOS and the BSDs.
const TOO_MANY_FILES: [i32; 2] = [24, 23];

/// Checks that a few files can be opened at once, so that starting the runtime cannot fail
/// half-way (tokio panics when it runs out of file descriptors).
///
/// # Errors
/// When the limit of open files is reached, with how to raise it.
pub fn check_file_descriptors() -> anyhow::Result<()> {
    let mut opened = Vec::with_capacity(STARTUP_FILES);
    for _ in 0..STARTUP_FILES {
        match std::fs::File::open("/dev/null") {
            Ok(file) => opened.push(file),
            Err(error) if is_too_many_files(&error) => {
                drop(opened); // Reading the limit takes a file too.
                let limit = open_files_limit()
                    .map(|limit| format!(" (ulimit -n is {limit})"))
                    .unwrap_or_default();
                anyhow::bail!(
                    "cannot start: the process may not open enough files{limit}; raise the \
                     limit of open files to at least {COMFORTABLE_LIMIT} with `ulimit -n` and \
                     run the command again"
                );
            }
            // No /dev/null here: nothing to check with, let the runtime try.
            Err(_) => break,
        }
    }
    Ok(())
}

/// A hint for an error that a low limit of open files may explain: SQLite says only "unable to
/// open database file" when it runs out of descriptors.
pub fn hint(error: &anyhow::Error) -> Option<String> {
    let limit = open_files_limit()?;
    if limit >= COMFORTABLE_LIMIT {
        return None;
    }
    let suspicious = error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(is_too_many_files)
            || cause.to_string().contains("unable to open database file")
            || cause.to_string().contains("Too many open files")
    });
    suspicious.then(|| {
        format!(
            "hint: the limit of open files is {limit} (ulimit -n); a database needs about 10 plus \
             2 per read connection: raise the limit to at least {COMFORTABLE_LIMIT}"
        )
    })
}

fn is_too_many_files(error: &io::Error) -> bool {
    error
        .raw_os_error()
        .is_some_and(|code| TOO_MANY_FILES.contains(&code))
}

/// The soft limit of open files, from `/proc/self/limits` (Linux); `None` elsewhere or when
/// unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63457                63457                processes \n\
                      Max open files            7                    1048576              files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(7));
        assert_eq!(
            parse_open_files_limit("Max open files unlimited unlimited files"),
            None
        );
        assert_eq!(parse_open_files_limit(""), None);
    }
}
