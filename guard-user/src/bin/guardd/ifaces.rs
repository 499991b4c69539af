//! Follows the protected interfaces. Deleting an interface detaches its XDP link (the pin
//! stays, attached to nothing); guardd logs it and attaches again as soon as an interface
//! of that name is back. Woken by rtnetlink link notifications, and checked on every
//! housekeeping tick as well, in case a notification was lost. An interface that cannot
//! be attached again (another XDP program took it) is retried the same way, its error
//! logged when it first happens or changes.

use std::os::fd::{AsRawFd, OwnedFd};

use guard_user::kernel::attach;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};
use tokio::io::unix::AsyncFd;
use tracing::{error, info, warn};

use crate::state::{Daemon, Interfaces};

/// A socket that becomes readable on every link change (RTMGRP_LINK).
pub fn link_events() -> std::io::Result<AsyncFd<OwnedFd>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(
        fd.as_raw_fd(),
        &NetlinkAddr::new(0, libc::RTMGRP_LINK as u32),
    )?;
    // SAFETY: the OwnedFd is moved in, so the descriptor stays open and the same for the
    // AsyncFd's whole life.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Waits for link notifications and discards them: their content does not matter, the
/// interfaces are checked by name afterwards.
pub async fn next_change(events: &AsyncFd<OwnedFd>) {
    let Ok(mut ready) = events.readable().await else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 8192];
    // Drain; ENOBUFS (the queue overflowed) is fine too: a check follows either way.
    while recv(
        events.get_ref().as_raw_fd(),
        &mut buf,
        MsgFlags::MSG_DONTWAIT,
    )
    .is_ok_and(|n| n > 0)
    {}
    ready.clear_ready();
}

impl Daemon {
    pub fn follow_interfaces(&self) {
        let mut guard = self.interfaces.lock().expect("interfaces lock");
        let Interfaces {
            attachments,
            reattach_failures,
        } = &mut *guard;
        for i in 0..attachments.len() {
            let iface = attachments[i].iface.clone();
            let now = attach::ifindex(&iface).unwrap_or(0);
            let was = attachments[i].ifindex;
            if now == 0 {
                // Gone, or gone again after coming back and failing to attach: then its
                // next failure is news again.
                if was != 0 || reattach_failures.remove(&iface).is_some() {
                    warn!(
                        iface,
                        "interface went away; guard attaches again when it comes back"
                    );
                }
                attachments[i].ifindex = 0;
                continue;
            }
            if now == was {
                continue;
            }
            let mode = self.engine.config().xdp_mode;
            let attached = self
                .engine
                .with_datapath(|d| attach::attach(d.program_mut(), &iface, mode, &self.pins));
            match attached {
                Ok(a) => {
                    info!(
                        iface,
                        ifindex = now,
                        mode = a.mode.as_str(),
                        "interface is back: attached again"
                    );
                    reattach_failures.remove(&iface);
                    attachments[i] = a;
                }
                // Left as it was, so the next change or tick tries again; logged once per
                // distinct error, not once a second.
                Err(e) => {
                    let why = e.to_string();
                    if reattach_failures.get(&iface) != Some(&why) {
                        error!(
                            iface,
                            "attaching again failed: {why}; retrying on every link change \
                             and every second"
                        );
                        reattach_failures.insert(iface, why);
                    }
                }
            }
        }
    }
}
