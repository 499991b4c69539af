//! An in-memory stand-in of the verdict maps, for tests without root: hash maps that refuse
//! a new key when full, as the kernel's do, the regions array read as zeros where unset,
//! and a failure injected at any one element write, to test rollback.

use std::collections::{BTreeMap, HashMap};

use aya::Pod;
use guard_common::dynamic::{DYN_REGION_ELEMS, DynLens};

use super::{Element, MapKind, Regions, VerdictMaps};
use crate::kernel::KernelError;

type Elements = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone)]
pub struct MemoryMaps {
    maps: HashMap<&'static str, Elements>,
    lens: DynLens,
    /// Entries each hash map holds at most.
    capacity: usize,
    /// The element write (put or delete, counting from 0) that fails, once.
    pub fail_at: Option<usize>,
    /// Element writes so far.
    pub writes: usize,
    /// The maps written, in order (a run of writes to one map once), and "-NAME" for
    /// deletions.
    pub log: Vec<String>,
}

impl MemoryMaps {
    pub fn new(capacity: usize) -> MemoryMaps {
        MemoryMaps {
            maps: HashMap::new(),
            lens: DynLens::EMPTY,
            capacity,
            fail_at: None,
            writes: 0,
            log: Vec::new(),
        }
    }

    /// Whether both hold the same elements and lengths (injection state aside).
    pub fn same_contents(&self, other: &MemoryMaps) -> bool {
        let non_empty = |m: &HashMap<&'static str, Elements>| {
            m.iter()
                .filter(|(_, e)| !e.is_empty())
                .map(|(n, e)| (*n, e.clone()))
                .collect::<BTreeMap<_, _>>()
        };
        self.lens == other.lens && non_empty(&self.maps) == non_empty(&other.maps)
    }

    /// The elements of the map `name`, as bytes.
    pub fn elements(&self, name: &str) -> Elements {
        self.maps.get(name).cloned().unwrap_or_default()
    }

    /// Elements of a map.
    pub fn count<M: MapKind>(&self) -> usize {
        self.maps.get(M::NAME).map_or(0, BTreeMap::len)
    }

    fn count_write(&mut self, name: &str) -> Result<(), KernelError> {
        if self.log.last().is_none_or(|l| l != name) {
            self.log.push(name.to_string());
        }
        let n = self.writes;
        self.writes += 1;
        if self.fail_at == Some(n) {
            return Err(refused("(injected)", "injected failure", libc::EIO));
        }
        Ok(())
    }
}

/// A write refused as the kernel refuses one.
fn refused(name: &'static str, call: &'static str, errno: i32) -> KernelError {
    KernelError::Map {
        name,
        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call,
            io_error: std::io::Error::from_raw_os_error(errno),
        }),
    }
}

fn bytes<T: Pod>(v: &T) -> Vec<u8> {
    // SAFETY: Pod types are plain bytes (their padding is explicit fields).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn value<T: Pod>(b: &[u8]) -> T {
    assert_eq!(b.len(), size_of::<T>(), "stored with this type");
    // SAFETY: `b` holds the bytes of a T (checked length), any bit pattern is a Pod value.
    unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<T>()) }
}

fn is_array<M: MapKind>() -> bool {
    M::NAME == Regions::NAME
}

impl VerdictMaps for MemoryMaps {
    fn put<M: MapKind>(&mut self, keys: &[M::K], values: &[M::V]) -> Result<(), KernelError> {
        assert_eq!(keys.len(), values.len(), "one value per key");
        for (k, v) in keys.iter().zip(values) {
            self.count_write(M::NAME)?;
            let (key, capacity) = (bytes(k), self.capacity);
            let map = self.maps.entry(M::NAME).or_default();
            let full = match is_array::<M>() {
                true => value::<u32>(&key) >= DYN_REGION_ELEMS,
                false => map.len() >= capacity && !map.contains_key(&key),
            };
            if full {
                return Err(refused(M::NAME, "bpf_map_update_batch", libc::E2BIG));
            }
            map.insert(key, bytes(v));
        }
        Ok(())
    }

    fn delete<M: MapKind>(&mut self, key: &M::K) -> Result<(), KernelError> {
        assert!(!is_array::<M>(), "array elements are not deleted");
        self.count_write(&format!("-{}", M::NAME))?;
        if let Some(m) = self.maps.get_mut(M::NAME) {
            m.remove(&bytes(key));
        }
        Ok(())
    }

    fn get<M: MapKind>(&self, key: &M::K) -> Result<Option<M::V>, KernelError> {
        let found = self.maps.get(M::NAME).and_then(|m| m.get(&bytes(key)));
        Ok(match (found, is_array::<M>()) {
            (Some(v), _) => Some(value(v)),
            // An array element always exists, zero until written.
            (None, true) => Some(value(&vec![0u8; size_of::<M::V>()])),
            (None, false) => None,
        })
    }

    fn all<M: MapKind>(&self) -> Result<Vec<Element<M>>, KernelError> {
        Ok(self
            .maps
            .get(M::NAME)
            .into_iter()
            .flatten()
            .map(|(k, v)| (value(k), value(v)))
            .collect())
    }

    fn capacity<M: MapKind>(&self) -> Result<usize, KernelError> {
        Ok(match is_array::<M>() {
            true => DYN_REGION_ELEMS as usize,
            false => self.capacity,
        })
    }

    fn lens(&self) -> DynLens {
        self.lens
    }

    fn set_lens(&mut self, lens: &DynLens) -> Result<(), KernelError> {
        self.count_write("CONFIG")?;
        self.lens = *lens;
        Ok(())
    }
}
