use std::process::ExitCode;

use craftlb_modules::protocol::run_module;
use craftlb_modules::route53_healthcheck::{NAME, SPEC, run};

fn main() -> ExitCode {
    run_module(NAME, &SPEC, run)
}
