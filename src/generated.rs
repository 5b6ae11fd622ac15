//! Test support for the copies of facts the code owns (the configuration's key table and
//! nix/config-keys.json, the metrics table): a test compares each committed copy with what the
//! code makes of it and fails while it is stale; with `TSAPI_REGENERATE=1` (`make generate`)
//! it writes the copy instead.

use std::path::Path;

/// Checks (or, regenerating, writes) the file at `path`, relative to the repository.
pub fn check_copy(path: &str, expected: &str) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let committed = std::fs::read_to_string(&full).unwrap_or_default();
    if committed == expected {
        return;
    }
    if std::env::var_os("TSAPI_REGENERATE").is_some() {
        std::fs::write(&full, expected).unwrap();
        return;
    }
    panic!("{path} is stale: run `make generate`");
}

/// Checks the block of Markdown `path` between the comment lines `<!-- {what}: generated … -->`
/// and `<!-- end of generated {what} -->`.
pub fn check_block(path: &str, what: &str, block: &str) {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let doc = std::fs::read_to_string(&full).unwrap();
    let start = format!("<!-- {what}: generated");
    let end = format!("<!-- end of generated {what} -->\n");
    let (before, rest) = doc
        .split_once(&start)
        .unwrap_or_else(|| panic!("{path}: no {start} marker"));
    let (marker_rest, rest) = rest.split_once('\n').unwrap();
    let (_, after) = rest
        .split_once(&end)
        .unwrap_or_else(|| panic!("{path}: no {end} marker"));
    check_copy(
        path,
        &format!("{before}{start}{marker_rest}\n{block}{end}{after}"),
    );
}
