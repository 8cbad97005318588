//! The modules' integration tests, in one test binary: every test binary
//! that links this crate is a fat-LTO link of every AWS SDK crate (~3 min
//! of CPU each on the CI machine), so five files as five binaries cost
//! ~12 minutes of build; as modules of one binary they cost one link.
//! Tests of different files share the harness's threads, so each file keeps
//! to its own loopback addresses and every test takes free ports.

mod boot;
mod collection;
mod docs;
mod emulator;
mod integration;
mod launch;
mod node;
mod nodeos;
mod udp;
