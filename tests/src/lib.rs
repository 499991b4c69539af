//! Test support for guard: packet builders, a BPF_PROG_TEST_RUN harness, network-namespace
//! testbeds and a guardd process handle. Everything it creates is removed on drop.
pub mod fixture;
pub mod packet;
