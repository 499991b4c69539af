//! Builds the XDP objects (crates `guard-ebpf`, the program guardd loads, and
//! `guard-ebpf-bench`, the fixtures' and benchmarks' references; bpfel-unknown-none,
//! bpf-linker) into OUT_DIR, where `src/kernel/objects.rs` embeds them, with the nightly pinned in
//! `guard-ebpf/ebpf-toolchain.toml` (`cargo xtask build` installs it and checks its LLVM).
fn main() -> aya_build::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../guard-ebpf");
    let bench = concat!(env!("CARGO_MANIFEST_DIR"), "/../guard-ebpf-bench");
    let pin = format!("{root}/ebpf-toolchain.toml");
    println!("cargo:rerun-if-changed={pin}");
    let text = std::fs::read_to_string(&pin).expect("guard-ebpf/ebpf-toolchain.toml");
    let channel = text
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("ebpf-toolchain.toml names a channel");
    aya_build::build_ebpf(
        [
            aya_build::Package {
                name: "guard-ebpf",
                root_dir: root,
                ..Default::default()
            },
            aya_build::Package {
                name: "guard-ebpf-bench",
                root_dir: bench,
                ..Default::default()
            },
        ],
        aya_build::Toolchain::Custom(&channel),
    )
}
