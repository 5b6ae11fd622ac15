//! Secrets in the configuration: a type that cannot be printed, and the files they are read
//! from (the Redis password, the cursor key), never from a configuration source.

use std::fmt;
use std::fs;
use std::path::Path;

/// Longest secret file accepted; a bigger file is a mistake, not a password or a key.
const SECRET_FILE_MAX_BYTES: u64 = 4096;

/// A value that must never reach a log, an error message or `timestamp-api config` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Reads a one-line secret (a password, the cursor key); a trailing newline is not part of it.
pub(super) fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let metadata = fs::metadata(path).map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".into());
    }
    if metadata.len() > SECRET_FILE_MAX_BYTES {
        return Err(format!("larger than {SECRET_FILE_MAX_BYTES} bytes"));
    }
    let raw = fs::read_to_string(path).map_err(|error| error.to_string())?;
    let password = raw.strip_suffix('\n').unwrap_or(&raw);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("is empty".into());
    }
    if password.contains(['\n', '\r']) {
        return Err("holds more than one line".into());
    }
    Ok(Secret::new(password))
}
