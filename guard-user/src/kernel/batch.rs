//! `BPF_MAP_UPDATE_BATCH` (Linux 5.6): many elements of one map in one system call, which
//! aya 0.14 does not wrap. A bulk ban or a restore after a reboot writes 100,000 elements into
//! each of three maps; one call per element was most of their time.

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    Pod,
    maps::{MapData, MapError},
    sys::SyscallError,
};

/// `bpf_attr.batch` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// Writes `keys[i] -> values[i]` into `map`, in order. On an error the elements before the
/// failing one are written; callers undo by key.
pub fn update<K: Pod, V: Pod>(map: &MapData, keys: &[K], values: &[V]) -> Result<(), MapError> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: u32::try_from(keys.len() - done).unwrap_or(u32::MAX),
            map_fd: map.fd().as_fd().as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` points at `count` keys and values of the map's sizes (Pod types of
        // the map's definition), alive for the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>() as u32,
            )
        };
        if ret < 0 {
            return Err(MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error: std::io::Error::last_os_error(),
            }));
        }
        // The kernel reports how many it wrote (all, unless a signal cut the call short).
        if attr.count == 0 {
            return Err(MapError::SyscallError(SyscallError {
                call: "bpf_map_update_batch",
                io_error: std::io::Error::other("the kernel wrote no element"),
            }));
        }
        done += attr.count as usize;
    }
    Ok(())
}
