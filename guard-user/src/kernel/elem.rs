//! Single elements of any map by raw `bpf(2)` calls, generic over the key and value types:
//! the lookups, deletions and key walks `verdict_maps` needs for maps of several types
//! (aya's typed wrappers fix one type per handle).

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    Pod,
    maps::{MapData, MapError},
    sys::SyscallError,
};

/// `bpf_attr` for the element commands (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    /// The value, or the next key for `BPF_MAP_GET_NEXT_KEY`.
    value: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// Runs `cmd`; `Ok(false)` when the kernel says the key is absent (ENOENT).
fn call(cmd: libc::c_long, attr: &mut ElemAttr, name: &'static str) -> Result<bool, MapError> {
    // SAFETY: `attr` points at a key and a value buffer of the map's sizes (Pod types of
    // its definition), alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut ElemAttr,
            size_of::<ElemAttr>() as u32,
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    let io_error = std::io::Error::last_os_error();
    match io_error.raw_os_error() {
        Some(libc::ENOENT) => Ok(false),
        _ => Err(MapError::SyscallError(SyscallError {
            call: name,
            io_error,
        })),
    }
}

fn attr(map: &MapData) -> ElemAttr {
    ElemAttr {
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        ..ElemAttr::default()
    }
}

/// The value of `key`, `None` when absent.
pub fn lookup<K: Pod, V: Pod>(map: &MapData, key: &K) -> Result<Option<V>, MapError> {
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    let mut a = attr(map);
    a.key = key as *const K as u64;
    a.value = value.as_mut_ptr() as u64;
    // SAFETY: the kernel filled the value when it found the key; V is Pod.
    Ok(call(BPF_MAP_LOOKUP_ELEM, &mut a, "bpf_map_lookup_elem")?
        .then(|| unsafe { value.assume_init() }))
}

/// Deletes `key`; false when it was absent.
pub fn delete<K: Pod>(map: &MapData, key: &K) -> Result<bool, MapError> {
    let mut a = attr(map);
    a.key = key as *const K as u64;
    call(BPF_MAP_DELETE_ELEM, &mut a, "bpf_map_delete_elem")
}

/// Every key of a hash map (keys deleted meanwhile may be missed, as with any walk). At
/// most `max_entries` keys: a walk whose key is deleted under it starts over, and must end.
pub fn keys<K: Pod>(map: &MapData) -> Result<Vec<K>, MapError> {
    let max = map.info()?.max_entries() as usize;
    let mut out: Vec<K> = Vec::new();
    while out.len() < max {
        let mut next = std::mem::MaybeUninit::<K>::zeroed();
        let mut a = attr(map);
        // No key (0) asks for the first.
        a.key = out.last().map_or(0, |k| k as *const K as u64);
        a.value = next.as_mut_ptr() as u64;
        if !call(BPF_MAP_GET_NEXT_KEY, &mut a, "bpf_map_get_next_key")? {
            return Ok(out);
        }
        // SAFETY: the kernel wrote the next key.
        out.push(unsafe { next.assume_init() });
    }
    Ok(out)
}
