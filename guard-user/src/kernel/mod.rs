//! The kernel side, the bottom layer of guardd: the XDP object and every handle on its maps
//! (the only writer of each), the pin layout, attaching to interfaces, what the kernel says
//! of links and programs, who holds the maps, the capabilities guardd needs, interface
//! addresses, what the verifier spent. It imports only `model` and `guard_common`.
pub mod attach;
pub mod batch;
pub mod bpf_info;
pub mod buckets;
pub mod datapath;
pub mod elem;
mod error;
pub mod known;
pub mod netif;
pub mod objects;
pub mod owners;
pub mod pins;
pub mod privileges;
pub mod runtime;
pub mod shape;
pub mod verdict_maps;
pub mod verifier;

pub use error::KernelError;
