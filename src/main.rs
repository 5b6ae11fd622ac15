//! The `timestamp-api` binary: parses the command line and hands over to `cli`.

mod allocator;

use std::process::ExitCode;

fn main() -> ExitCode {
    timestamp_api::main()
}
