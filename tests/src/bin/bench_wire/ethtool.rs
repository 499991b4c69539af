//! One ethtool statistic of one interface, read with the SIOCETHTOOL ioctl (a few
//! microseconds, cheap enough for the sender to read between batches).

use std::{
    ffi::c_void,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use guard_tests::netns::Netns;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
/// `struct ethtool_drvinfo`: 196 bytes, `n_stats` at 180.
const DRVINFO_LEN: usize = 196;
const DRVINFO_N_STATS: usize = 180;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

pub struct Stat {
    /// A socket in the interface's namespace: the ioctl looks the name up there.
    sock: OwnedFd,
    name: [u8; libc::IFNAMSIZ],
    n_stats: usize,
    index: usize,
}

impl Stat {
    pub fn open(ns: &Netns, iface: &str, stat: &str) -> Stat {
        let sock = ns.run(|| {
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            unsafe { OwnedFd::from_raw_fd(fd) }
        });
        let mut name = [0u8; libc::IFNAMSIZ];
        name[..iface.len()].copy_from_slice(iface.as_bytes());
        let mut s = Stat {
            sock,
            name,
            n_stats: 0,
            index: 0,
        };
        let mut info = [0u8; DRVINFO_LEN];
        info[..4].copy_from_slice(&ETHTOOL_GDRVINFO.to_ne_bytes());
        s.ioctl(info.as_mut_ptr());
        s.n_stats = u32::from_ne_bytes(
            info[DRVINFO_N_STATS..DRVINFO_N_STATS + 4]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let mut strings = vec![0u8; 12 + s.n_stats * ETH_GSTRING_LEN];
        for (i, v) in [ETHTOOL_GSTRINGS, ETH_SS_STATS, s.n_stats as u32]
            .iter()
            .enumerate()
        {
            strings[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        s.ioctl(strings.as_mut_ptr());
        s.index = strings[12..]
            .chunks(ETH_GSTRING_LEN)
            .position(|c| c.split(|b| *b == 0).next() == Some(stat.as_bytes()))
            .unwrap_or_else(|| panic!("{iface} has no ethtool statistic {stat}"));
        s
    }

    pub fn read(&self) -> u64 {
        // struct ethtool_stats: cmd, n_stats, then u64 data (8-byte aligned).
        let mut buf = vec![0u64; 1 + self.n_stats];
        let head = u64::from(ETHTOOL_GSTATS) | ((self.n_stats as u64) << 32);
        buf[0] = if cfg!(target_endian = "little") {
            head
        } else {
            head.rotate_left(32)
        };
        self.ioctl(buf.as_mut_ptr().cast());
        buf[1 + self.index]
    }

    fn ioctl(&self, data: *mut u8) {
        let mut req = IfReq {
            name: self.name,
            data: data.cast(),
            _pad: [0; 16],
        };
        let rc = unsafe { libc::ioctl(self.sock.as_raw_fd(), SIOCETHTOOL, &mut req) };
        assert!(rc == 0, "SIOCETHTOOL: {}", std::io::Error::last_os_error());
    }
}
