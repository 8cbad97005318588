use std::process::ExitCode;

fn main() -> ExitCode {
    craftlb_modules::protocol::run_module(&craftlb_modules::route53_healthcheck::MODULE)
}
