//! The control surface: the API's types and bounds, its client, the command lines of guardd
//! and guardctl, and top talkers from sampled drops.
pub mod cli;
pub mod client;
pub mod model;
pub mod requests;
pub mod routes;
pub mod top;
