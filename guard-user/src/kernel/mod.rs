//! The kernel side: the XDP object and its maps, the pin layout, attaching to interfaces,
//! what the kernel says of links and programs, who holds the maps, the capabilities guardd
//! needs, interface addresses, what the verifier spent.
pub mod attach;
pub mod batch;
pub mod bpf_info;
pub mod datapath;
pub mod netif;
pub mod objects;
pub mod owners;
pub mod pins;
pub mod privileges;
pub mod verifier;
