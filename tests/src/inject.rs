//! Real kernel-map failures, injected from outside guardd: filling one of its pinned hash
//! maps with junk keys (that the kernel never looks up) until only `free` slots are left, so
//! guardd's next inserts fail with E2BIG part-way through a batch. The junk is removed on
//! drop.

use std::path::{Path, PathBuf};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData},
};

pub struct Filled<K: Pod, V: Pod> {
    path: PathBuf,
    junk: Vec<K>,
    value: std::marker::PhantomData<V>,
}

impl<K: Pod, V: Pod> Filled<K, V> {
    /// Fills the hash map pinned at `path` with keys from `junk_key(i)` (i = 0, 1, ...)
    /// holding `value`, until `free` slots are left.
    pub fn new(path: &Path, free: u32, value: V, junk_key: impl Fn(u32) -> K) -> Self {
        let mut map = open::<K, V>(path);
        let data: &MapData = map_data(&map);
        let max = data.info().expect("map info").max_entries();
        let used = map.keys().filter_map(Result::ok).count() as u32;
        let want = max.checked_sub(free).expect("free <= max_entries");
        let mut junk = Vec::new();
        let mut i = 0;
        while used + (junk.len() as u32) < want {
            let k = junk_key(i);
            i += 1;
            if map.get(&k, 0).is_ok() {
                continue;
            }
            map.insert(k, value, 0)
                .unwrap_or_else(|e| panic!("filling {}: {e}", path.display()));
            junk.push(k);
        }
        Filled {
            path: path.to_path_buf(),
            junk,
            value: std::marker::PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.junk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.junk.is_empty()
    }

    /// Removes the junk now (what guardd already removed is skipped).
    pub fn clear(&mut self) {
        if self.junk.is_empty() || !self.path.exists() {
            return;
        }
        let mut map = open::<K, V>(&self.path);
        for k in self.junk.drain(..) {
            let _ = map.remove(&k);
        }
    }
}

impl<K: Pod, V: Pod> Drop for Filled<K, V> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The keys of the hash map pinned at `path` (of value type `V`).
pub fn keys<K: Pod, V: Pod>(path: &Path) -> Vec<K> {
    open::<K, V>(path).keys().filter_map(Result::ok).collect()
}

fn open<K: Pod, V: Pod>(path: &Path) -> HashMap<MapData, K, V> {
    let data = MapData::from_pin(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let map = Map::from_map_data(data).expect("map");
    HashMap::try_from(map).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn map_data<K: Pod, V: Pod>(map: &HashMap<MapData, K, V>) -> &MapData {
    use aya::maps::IterableMap;
    map.map()
}
