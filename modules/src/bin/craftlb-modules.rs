//! Every craftlb module in one static binary: `library/<module>` links to it.
use std::process::ExitCode;

fn main() -> ExitCode {
    craftlb_modules::protocol::main(craftlb_modules::MODULES)
}
