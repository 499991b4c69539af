//! The interface a pinned XDP bpf_link is attached to. aya's `LinkInfo` does not expose
//! it, so this reads `bpf_link_info` with two bpf(2) commands. When an interface is
//! deleted, its XDP link stays (pinned) but detaches: the index reads 0, and a re-created
//! interface of the same name has another index.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `struct bpf_link_info`: type, id, prog_id, then (8-byte aligned) the per-type union,
/// whose XDP member starts with the ifindex.
const LINK_INFO_LEN: usize = 64;
const XDP_IFINDEX_OFF: usize = 16;

/// `union bpf_attr` for BPF_OBJ_GET.
#[repr(C)]
struct ObjGet {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD.
#[repr(C)]
struct GetInfo {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is one of the bpf_attr layouts above, of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The ifindex of the XDP link pinned at `pin` (0: attached to no interface).
pub fn xdp_link_ifindex(pin: &Path) -> io::Result<u32> {
    let path = CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fd = bpf(
        BPF_OBJ_GET,
        &mut ObjGet {
            pathname: path.as_ptr() as u64,
            bpf_fd: 0,
            file_flags: 0,
        },
    )?;
    // SAFETY: BPF_OBJ_GET returned a new file descriptor, now ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut info = [0u8; LINK_INFO_LEN];
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &mut GetInfo {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: LINK_INFO_LEN as u32,
            info: info.as_mut_ptr() as u64,
        },
    )?;
    Ok(u32::from_ne_bytes(
        info[XDP_IFINDEX_OFF..XDP_IFINDEX_OFF + 4]
            .try_into()
            .expect("4 bytes"),
    ))
}
