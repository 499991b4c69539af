//! guardd as a real process under the unit's capabilities, on a veth pair between network
//! namespaces, with real traffic, real sockets and real servers; one module per feature.
//! Needs root.

mod abuse;
mod api;
mod atomic;
mod auto_aggregates;
mod auto_bans;
mod auto_proof;
mod budget;
mod bulk;
mod daemon_errors;
mod durable;
mod durable_errors;
mod faults;
mod fleet;
mod fleet_tls;
mod fleet_traffic;
mod fleet_trust;
mod guardctl;
mod judged;
mod lists;
mod logging;
mod metrics;
mod pow_browser;
mod privileges;
mod protect;
mod rate;
mod restart;
mod shape;
mod shape_day;
mod syn_budget;
mod top;
mod verdicts;
