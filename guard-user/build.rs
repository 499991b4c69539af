//! Builds the XDP objects (crate `guard-ebpf`, nightly, bpfel-unknown-none, bpf-linker)
//! into OUT_DIR, where `src/objects.rs` embeds them.
fn main() -> aya_build::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../guard-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "guard-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
