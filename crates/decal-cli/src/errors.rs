//! What both binaries (`decal`, `decal-full`) print and set up the same way.

/// The error and its causes on one line, as `{err:#}` prints them, but without a cause whose text the line
/// already holds: library errors put the OS text in their message *and* expose the `io::Error` as their
/// source (so that callers who flatten an error with `{e}` keep the reason), which `{err:#}` would repeat.
pub(crate) fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Rust ignores SIGPIPE, so `println!` panics when stdout is closed early (`decal report … | head`).
/// A command-line tool should instead end quietly like any other Unix filter.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn restore_default_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is always a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
pub(crate) fn restore_default_sigpipe() {}
