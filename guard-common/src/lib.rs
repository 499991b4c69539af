//! Types shared by the XDP program (`guard-ebpf`) and the daemon (`guard-user`).
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and free of padding so both sides agree
//! on the byte layout of every map key and value. The `user` feature adds `aya::Pod`.
#![no_std]

pub mod bench;
pub mod dynamic;
pub mod events;
pub mod fleet;
pub mod known;
pub mod lists;
pub mod rules;
pub mod runtime;
pub mod shape;
pub mod siphash;
pub mod stats;
pub mod tokens;

pub use lists::{ListCode, V6Key, V6Len};
pub use runtime::RuntimeConfig;
pub use stats::{Reason, Verdict};

/// Version of the map layout. It is part of the pin path (`<pin_dir>/v<N>/`), so a daemon
/// never adopts maps whose layout it does not understand.
pub const SCHEMA_VERSION: u32 = 4;

/// Names of the maps in the object file; also their file names under `<pin_dir>/v<N>/maps/`.
pub mod map_names {
    pub const CONFIG: &str = "CONFIG";
    pub const STATS: &str = "STATS";
    pub const V4_DIR24: &str = "V4_DIR24";
    pub const V4_TBL8: &str = "V4_TBL8";
    pub const V6_TOP24: &str = "V6_TOP24";
    pub const V6_PREFIX: &str = "V6_PREFIX";
    pub const V6_ROOT: &str = "V6_ROOT";
    pub const V6_NODES: &str = "V6_NODES";
    pub const RULES: &str = "RULES";
    pub const RULE_PORTS: &str = "RULE_PORTS";
    pub const RULE_STATS: &str = "RULE_STATS";
    pub const BUCKETS: &str = "BUCKETS";
    pub const HEARTBEAT: &str = "HEARTBEAT";
    pub const DYN_V4: &str = "DYN_V4";
    pub const DYN_V6: &str = "DYN_V6";
    pub const DYN_REGIONS: &str = "DYN_REGIONS";
    pub const DYN_META: &str = "DYN_META";
    pub const BAN_HIST: &str = "BAN_HIST";
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
    pub const EVENT_BUDGET: &str = "EVENT_BUDGET";
    pub const LIMIT_SEEN: &str = "LIMIT_SEEN";
    pub const LIMIT_REPORTS: &str = "LIMIT_REPORTS";
    pub const FLEET_PEERS: &str = "FLEET_PEERS";
    pub const FLEET_HINT: &str = "FLEET_HINT";
    pub const BUDGET_POOL: &str = "BUDGET_POOL";
    pub const KNOWN: &str = "KNOWN";
    pub const SHAPE_SKETCH: &str = "SHAPE_SKETCH";
    pub const SHAPE_PACKETS: &str = "SHAPE_PACKETS";
    pub const SHAPE_STATE: &str = "SHAPE_STATE";
    /// Every map the daemon pins, in a fixed order.
    pub const ALL: [&str; 29] = [
        CONFIG,
        STATS,
        V4_DIR24,
        V4_TBL8,
        V6_TOP24,
        V6_PREFIX,
        V6_ROOT,
        V6_NODES,
        RULES,
        RULE_PORTS,
        RULE_STATS,
        BUCKETS,
        HEARTBEAT,
        DYN_V4,
        DYN_V6,
        DYN_REGIONS,
        DYN_META,
        BAN_HIST,
        DROP_EVENTS,
        EVENT_BUDGET,
        LIMIT_SEEN,
        LIMIT_REPORTS,
        FLEET_PEERS,
        FLEET_HINT,
        BUDGET_POOL,
        KNOWN,
        SHAPE_SKETCH,
        SHAPE_PACKETS,
        SHAPE_STATE,
    ];
}

/// Name of the production XDP program in the object file.
pub const PROGRAM_NAME: &str = "guard";

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], contain only integers and have no padding
    // (checked by the layout tests below).
    unsafe impl aya::Pod for crate::RuntimeConfig {}
    unsafe impl aya::Pod for crate::V6Key {}
    unsafe impl aya::Pod for crate::V6Len {}
    unsafe impl aya::Pod for crate::lists::Bitmap512 {}
    unsafe impl aya::Pod for crate::lists::V6Node {}
    unsafe impl aya::Pod for crate::rules::RuleSpec {}
    unsafe impl aya::Pod for crate::tokens::Bucket {}
    unsafe impl aya::Pod for crate::dynamic::DynKeyV4 {}
    unsafe impl aya::Pod for crate::dynamic::DynEntry {}
    unsafe impl aya::Pod for crate::dynamic::DynMeta {}
    unsafe impl aya::Pod for crate::dynamic::DynMetaKey {}
    unsafe impl aya::Pod for crate::dynamic::BanHistory {}
    unsafe impl aya::Pod for crate::events::DropEvent {}
    unsafe impl aya::Pod for crate::events::LimitReport {}
    unsafe impl aya::Pod for crate::fleet::FleetPeer {}
    unsafe impl aya::Pod for crate::shape::Sketch {}
}

#[cfg(test)]
mod tests {
    use core::mem::size_of;

    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(size_of::<V6Key>(), 4 + 16);
        assert_eq!(size_of::<V6Len>(), 4 + 16);
        assert_eq!(
            size_of::<RuntimeConfig>(),
            4 * 4
                + 8
                + 8
                + 8
                + 16
                + lists::MAX_V6_LENS * size_of::<V6Len>()
                + size_of::<dynamic::DynLens>()
                + 4
                + 4
        );
        assert_eq!(size_of::<lists::Bitmap512>(), 64);
        assert_eq!(size_of::<events::LimitReport>(), 16 + 8 + 4 + 4);
        assert_eq!(size_of::<fleet::FleetPeer>(), 16 + 4);
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        // BPF_OBJ_NAME_LEN is 16 including the NUL.
        for name in map_names::ALL {
            assert!(name.len() <= 15, "{name} is too long for a BPF map name");
        }
    }
}
