use std::process::ExitCode;

use craftlb_modules::protocol::run_module;
use craftlb_modules::update_peers::{NAME, SPEC, run};

fn main() -> ExitCode {
    run_module(NAME, &SPEC, run)
}
