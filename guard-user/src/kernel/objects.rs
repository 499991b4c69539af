//! The compiled XDP objects, embedded at build time.

/// Aligns embedded bytes for the ELF parser.
#[repr(C, align(32))]
struct Aligned<B: ?Sized>(B);

macro_rules! embed {
    ($path:expr) => {{
        static A: &Aligned<[u8]> = &Aligned(*include_bytes!($path));
        &A.0
    }};
}

/// The production program `guard` and its maps.
pub fn guard() -> &'static [u8] {
    embed!(concat!(env!("OUT_DIR"), "/guard"))
}

/// Reference programs for fixtures and benchmarks (`xdp_pass`, `lpm_ref`; crate
/// `guard-ebpf-bench`). guardd and guardctl never call this, so their binaries leave it out.
pub fn bench() -> &'static [u8] {
    embed!(concat!(env!("OUT_DIR"), "/guard-xdp-bench"))
}
