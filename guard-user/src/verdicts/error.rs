//! Why a change to the bans and allows was refused or failed.

use guard_common::dynamic::MAX_DYN_LENS;
use ipnet::IpNet;

use super::Kind;
use crate::kernel::KernelError;

#[derive(Debug, thiserror::Error)]
pub enum DynError {
    #[error(
        "{net} is covered by the allow entry {allow}: remove that first or ban a narrower prefix"
    )]
    CoveredByAllow { net: IpNet, allow: IpNet },
    #[error("{net} covers {protect}, which guard never bans")]
    Protected {
        net: IpNet,
        protect: crate::protect::Protect,
    },
    #[error(
        "the ban table is full: {active} active, max_entries {max}; this request adds {adding}"
    )]
    BansFull {
        active: usize,
        max: usize,
        adding: usize,
    },
    #[error("the allow table is full: {active} active, at most {max}; this request adds {adding}")]
    AllowsFull {
        active: usize,
        max: usize,
        adding: usize,
    },
    #[error("the vouch table is full: {active} active, at most {max}; this request adds {adding}")]
    VouchesFull {
        active: usize,
        max: usize,
        adding: usize,
    },
    #[error("{net} is not one address: a vouch is for one source (/32 or /128)")]
    NotOneAddress { net: IpNet },
    #[error(
        "{net} has a {} entry, which a vouch would replace: remove it first (a vouch never lifts \
         a ban, and an allow already passes everything)", .kind.as_str()
    )]
    VouchOverEntry { net: IpNet, kind: Kind },
    #[error(
        "{family} bans and allows would use {count} distinct prefix lengths; at most {MAX_DYN_LENS} are supported"
    )]
    TooManyLengths { family: &'static str, count: usize },
    #[error(
        "entries from other nodes would use {count} distinct {family} prefix lengths; at most \
         {} are taken from the fleet, the rest stay for this host's own",
        super::policy::MAX_REMOTE_LENS
    )]
    RemoteLengths { family: &'static str, count: usize },
    #[error("no {} for {net}", .kind.as_str())]
    NotFound { net: IpNet, kind: Kind },
    /// The kernel layer refused a write (the plan was put back, or the error says not).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}
