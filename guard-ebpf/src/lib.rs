//! Code shared by the XDP objects of this crate: header parsing and map access helpers.
#![no_std]

pub mod parse;
