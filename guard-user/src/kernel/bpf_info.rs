//! What the kernel says of a pinned link or a loaded program, read by file descriptor.
//!
//! aya reads a program's map ids through `bpf_prog_get_fd_by_id`, which needs CAP_SYS_ADMIN,
//! and its `LinkInfo` lacks the XDP ifindex. guardd runs with CAP_BPF, CAP_PERFMON and
//! CAP_NET_ADMIN only, so these read `bpf_link_info` and `bpf_prog_info` from descriptors it
//! already holds or opens through a pin (BPF_OBJ_GET needs no capability beyond bpf(2)).
//! When an interface is deleted, its XDP link stays (pinned) but detaches: the index reads
//! 0, and a re-created interface of the same name has another index.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `struct bpf_link_info`: type, id, prog_id, then (8-byte aligned) the per-type union,
/// whose XDP member starts with the ifindex.
const LINK_INFO_LEN: usize = 64;
const XDP_IFINDEX_OFF: usize = 16;
/// `struct bpf_prog_info` up to `map_ids`: id at 4, tag at 8, nr_map_ids at 52, map_ids at 56.
const PROG_INFO_LEN: usize = 64;
const PROG_ID_OFF: usize = 4;
const PROG_TAG_OFF: usize = 8;
const PROG_NR_MAP_IDS_OFF: usize = 52;
const PROG_MAP_IDS_OFF: usize = 56;

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

/// Opens the object pinned at `pin`.
fn open_pinned(pin: &Path) -> io::Result<OwnedFd> {
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn info(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        &mut GetInfo {
            bpf_fd: fd.as_raw_fd() as u32,
            info_len: buf.len() as u32,
            info: buf.as_mut_ptr() as u64,
        },
    )
    .map(drop)
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

/// The ifindex of the XDP link pinned at `pin` (0: attached to no interface).
pub fn xdp_link_ifindex(pin: &Path) -> io::Result<u32> {
    let fd = open_pinned(pin)?;
    let mut buf = [0u8; LINK_INFO_LEN];
    info(fd.as_fd(), &mut buf)?;
    Ok(u32_at(&buf, XDP_IFINDEX_OFF))
}

/// Which program a descriptor or pin refers to: its id, and what makes two loads the same
/// program (the tag of its instructions and the maps it uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgIdentity {
    pub id: u32,
    pub tag: [u8; 8],
    /// Sorted.
    pub map_ids: Vec<u32>,
}

impl ProgIdentity {
    /// Same code on the same maps: the tag alone ignores which maps the code refers to.
    pub fn same_program(&self, other: &ProgIdentity) -> bool {
        self.tag == other.tag && self.map_ids == other.map_ids
    }
}

/// The identity of the program behind `fd`.
pub fn prog_identity(fd: BorrowedFd<'_>) -> io::Result<ProgIdentity> {
    let mut buf = [0u8; PROG_INFO_LEN];
    info(fd, &mut buf)?;
    let count = u32_at(&buf, PROG_NR_MAP_IDS_OFF) as usize;
    let mut map_ids = vec![0u32; count];
    if count > 0 {
        // Second pass: the kernel fills up to nr_map_ids ids at map_ids.
        let mut again = [0u8; PROG_INFO_LEN];
        again[PROG_NR_MAP_IDS_OFF..PROG_NR_MAP_IDS_OFF + 4]
            .copy_from_slice(&(count as u32).to_ne_bytes());
        again[PROG_MAP_IDS_OFF..PROG_MAP_IDS_OFF + 8]
            .copy_from_slice(&(map_ids.as_mut_ptr() as u64).to_ne_bytes());
        info(fd, &mut again)?;
        map_ids.truncate((u32_at(&again, PROG_NR_MAP_IDS_OFF) as usize).min(count));
    }
    map_ids.sort_unstable();
    Ok(ProgIdentity {
        id: u32_at(&buf, PROG_ID_OFF),
        tag: buf[PROG_TAG_OFF..PROG_TAG_OFF + 8]
            .try_into()
            .expect("8 bytes"),
        map_ids,
    })
}

/// The identity of the program pinned at `pin`.
pub fn pinned_prog_identity(pin: &Path) -> io::Result<ProgIdentity> {
    let fd = open_pinned(pin)?;
    prog_identity(fd.as_fd())
}
