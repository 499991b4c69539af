//! The datapath's writes: the runtime config, the rules, the list tables, and a reload's
//! change of all three, all or nothing.

use std::{collections::BTreeSet, net::SocketAddr};

use aya::maps::{Array, HashMap, MapData, MapError};
use guard_common::{
    RuntimeConfig, V6Key,
    fleet::{FleetPeer, hint_bit},
    lists::{Bitmap512, MAX_V6_LENS, V6_NODE, V6_NODES_PER_GENERATION, V6_ROOT_ENTRIES, V6Len},
    map_names,
    rules::{MAX_RULES, PORT_ELEMS_PER_RULE},
    runtime::flags,
};

use super::{Change, Datapath, KernelError};
use crate::{lists::tables::Tables, model::rules::CompiledRule};

impl Datapath {
    /// The refill's `ticks` slices per period, and how long the refill heartbeat may be
    /// silent before the rate rules fail open (the kernel accrues tokens for at most that
    /// long since a bucket's last refill).
    pub fn set_refill_timing(
        &mut self,
        ticks: u32,
        stale_after: std::time::Duration,
    ) -> Result<(), KernelError> {
        self.runtime
            .update(|rc| refill_timing(rc, ticks, stale_after))
    }

    /// Applies a reload's lists, rules and runtime settings, all or nothing: the lists and
    /// rules first, then the runtime config (flags, refill timing) in one write. When a
    /// write fails, the previous lists, rules and runtime config are written back and the
    /// error returned. `old_rules` are the rules in force. The verdict maps' fields of
    /// `CONFIG` (their prefix lengths) are theirs: neither written nor put back here.
    pub fn apply(
        &mut self,
        change: Change<'_>,
        old_rules: &[CompiledRule],
    ) -> Result<(), KernelError> {
        let saved_runtime = self.runtime.get();
        let saved_tables = self.written.clone();
        let res = self.write_tables(change.tables).and_then(|()| {
            self.set_rules(change.rules)?;
            self.runtime.update(|rc| {
                rc.flags = change.flags;
                refill_timing(rc, change.refill_ticks, change.stale_after);
                rc.verified_for = guard_common::known::units(change.verified_for.as_nanos() as u64);
            })
        });
        let Err(error) = res else { return Ok(()) };
        let undo = (|| {
            if let Some(tables) = saved_tables {
                self.write_tables(tables)?;
            }
            self.set_rules(old_rules)?;
            self.runtime.update(|rc| {
                let (lens, any) = (rc.dyn_lens, rc.dyn_any);
                *rc = saved_runtime;
                (rc.dyn_lens, rc.dyn_any) = (lens, any);
            })
        })();
        Err(KernelError::undone(error, undo))
    }

    /// Writes the rules; the count goes last so the kernel never sees a half-written rule.
    pub fn set_rules(&mut self, rules: &[CompiledRule]) -> Result<(), KernelError> {
        let n = rules.len().min(MAX_RULES);
        if (n as u32) < self.runtime.get().rule_count {
            self.runtime.update(|rc| rc.rule_count = n as u32)?;
        }
        for (i, r) in rules.iter().take(MAX_RULES).enumerate() {
            let i = i as u32;
            for (j, b) in r.ports.iter().enumerate() {
                self.rule_ports
                    .set(i * PORT_ELEMS_PER_RULE + j as u32, b, 0)
                    .map_err(|source| KernelError::Map {
                        name: map_names::RULE_PORTS,
                        source,
                    })?;
            }
            self.rules
                .set(i, r.spec, 0)
                .map_err(|source| KernelError::Map {
                    name: map_names::RULES,
                    source,
                })?;
        }
        self.runtime.update(|rc| rc.rule_count = n as u32)
    }

    /// The fleet's servers whose connections skip the rules (`guard_common::fleet`): the new
    /// ones and their hint bits first, then the old ones go (a reader sees a superset
    /// meanwhile). Returns the runtime flag that turns the lookup on (0 for none).
    pub fn set_fleet_peers(&mut self, servers: &[SocketAddr]) -> Result<u32, KernelError> {
        let peers: Vec<FleetPeer> = servers.iter().map(peer_of).collect();
        let hint = peers.iter().fold(0, |h, p| h | hint_bit(&p.addr));
        let mut table = self.fleet_peers()?;
        for p in &peers {
            table
                .insert(p, 1, 0)
                .map_err(KernelError::map(map_names::FLEET_PEERS))?;
        }
        let stale: Vec<FleetPeer> = table
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !peers.contains(k))
            .collect();
        // The old servers' bits stay until they are gone: the hint never misses a peer.
        let old = self.fleet_hint()?.get(&0, 0).unwrap_or(0);
        self.write_fleet_hint(hint | old)?;
        let mut table = self.fleet_peers()?;
        for k in &stale {
            let _ = table.remove(k);
        }
        self.write_fleet_hint(hint)?;
        Ok(if peers.is_empty() {
            0
        } else {
            flags::FLEET_PEERS
        })
    }

    fn fleet_peers(&mut self) -> Result<HashMap<&mut MapData, FleetPeer, u32>, KernelError> {
        let name = map_names::FLEET_PEERS;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(KernelError::MissingMap { name })?;
        HashMap::try_from(map).map_err(KernelError::map(name))
    }

    fn fleet_hint(&mut self) -> Result<Array<&mut MapData, u64>, KernelError> {
        let name = map_names::FLEET_HINT;
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(KernelError::MissingMap { name })?;
        Array::try_from(map).map_err(KernelError::map(name))
    }

    fn write_fleet_hint(&mut self, hint: u64) -> Result<(), KernelError> {
        self.fleet_hint()?
            .set(0, hint, 0)
            .map_err(KernelError::map(map_names::FLEET_HINT))
    }

    /// Sets the flag bits of the runtime config (`guard_common::runtime::flags`).
    pub fn set_flags(&mut self, flags: u32) -> Result<(), KernelError> {
        self.runtime.update(|rc| rc.flags = flags)
    }

    /// Writes new list tables. The order keeps every address answered by either the old or
    /// the new lists throughout: new entries first (IPv4 host tables, the new IPv6 trie's
    /// nodes in the half of `V6_NODES` the old one does not use), then the direct tables
    /// that point at them, then the removal of entries nothing points at any more.
    pub fn write_tables(&mut self, tables: Tables) -> Result<(), KernelError> {
        let err = KernelError::map;
        for (&k, v) in &tables.v4_tbl8 {
            self.v4_tbl8
                .insert(k, v, 0)
                .map_err(err(map_names::V4_TBL8))?;
        }
        for (k, &v) in &tables.v6_prefix {
            self.v6_prefix
                .insert(k, v, 0)
                .map_err(err(map_names::V6_PREFIX))?;
        }
        // While both generations are in the hash, probe the lengths of both.
        let old_lens = self.current_v6_lens();
        let union: BTreeSet<u32> = old_lens.iter().chain(&tables.v6_lens).copied().collect();
        if union.len() <= MAX_V6_LENS {
            self.set_v6_lens(&union.iter().rev().copied().collect::<Vec<_>>())?;
        }
        let previous = self.written.take();
        let same_v6 = previous
            .as_ref()
            .is_some_and(|p| p.v6_trie == tables.v6_trie);
        let v6_root = if same_v6 {
            None
        } else {
            let live = match self.v6_base {
                Some(base) => base,
                None => self.live_v6_base().map_err(err(map_names::V6_ROOT))?,
            };
            let base = if live == 0 {
                V6_NODES_PER_GENERATION
            } else {
                0
            };
            let (root, nodes) = tables.v6_trie.rebased(base);
            for (i, n) in nodes.iter().enumerate() {
                self.v6_nodes
                    .set(base + i as u32, n, 0)
                    .map_err(err(map_names::V6_NODES))?;
            }
            self.v6_base = Some(base);
            // The roots in force, to write only those that change.
            let old = previous.as_ref().map(|p| p.v6_trie.root_at(live));
            Some((root, old))
        };
        write_array(
            &mut self.v4_dir24,
            &tables.v4_dir24,
            previous.as_ref().map(|t| &t.v4_dir24),
        )
        .map_err(err(map_names::V4_DIR24))?;
        write_array(
            &mut self.v6_top24,
            &tables.v6_top24,
            previous.as_ref().map(|t| &t.v6_top24),
        )
        .map_err(err(map_names::V6_TOP24))?;
        if let Some((root, old)) = v6_root {
            // Each root entry is one 4-byte store: its /16 answers old or new.
            for (i, &e) in root.iter().enumerate() {
                if old.as_ref().is_some_and(|o| o[i] == e) {
                    continue;
                }
                self.v6_root
                    .set(i as u32, e, 0)
                    .map_err(err(map_names::V6_ROOT))?;
            }
        }
        self.set_v6_lens(&tables.v6_lens)?;
        let stale4: Vec<u32> = self
            .v4_tbl8
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !tables.v4_tbl8.contains_key(k))
            .collect();
        for k in stale4 {
            self.v4_tbl8.remove(&k).map_err(err(map_names::V4_TBL8))?;
        }
        let stale6: Vec<V6Key> = self
            .v6_prefix
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !tables.v6_prefix.contains_key(k))
            .collect();
        for k in stale6 {
            self.v6_prefix
                .remove(&k)
                .map_err(err(map_names::V6_PREFIX))?;
        }
        self.written = Some(tables);
        Ok(())
    }

    fn current_v6_lens(&self) -> Vec<u32> {
        let rc = self.runtime.get();
        rc.v6_lens[..rc.v6_len_count as usize]
            .iter()
            .map(|l| l.prefix_len)
            .collect()
    }

    fn set_v6_lens(&mut self, lens: &[u32]) -> Result<(), KernelError> {
        let mut masks = [V6Len::EMPTY; MAX_V6_LENS];
        for (slot, &len) in masks.iter_mut().zip(lens) {
            *slot = V6Len::new(len);
        }
        self.runtime.update(|rc| {
            rc.v6_lens = masks;
            rc.v6_len_count = lens.len().min(MAX_V6_LENS) as u32;
        })
    }

    /// The half of `V6_NODES` the adopted trie uses (0 when it has no node).
    fn live_v6_base(&self) -> Result<u32, MapError> {
        for i in 0..V6_ROOT_ENTRIES {
            let e = self.v6_root.get(&i, 0)?;
            if e & V6_NODE != 0 {
                let node = e & !V6_NODE;
                return Ok(if node >= V6_NODES_PER_GENERATION {
                    V6_NODES_PER_GENERATION
                } else {
                    0
                });
            }
        }
        Ok(0)
    }
}

/// The refill's fields of `CONFIG` (see `Datapath::set_refill_timing`).
fn refill_timing(rc: &mut RuntimeConfig, ticks: u32, stale_after: std::time::Duration) {
    let stale_ns = stale_after.as_nanos() as u64;
    rc.accrue_max_ns = stale_ns.min(guard_common::tokens::MAX_ACCRUAL_NS);
    rc.refill_ticks = ticks;
    rc.stale_after_ns = stale_ns;
}

/// Writes the elements of `want` that differ from `previous` (all of them without one).
fn write_array(
    map: &mut Array<MapData, Bitmap512>,
    want: &[Bitmap512],
    previous: Option<&Vec<Bitmap512>>,
) -> Result<(), MapError> {
    for (i, v) in want.iter().enumerate() {
        if previous.is_some_and(|p| p[i] == *v) {
            continue;
        }
        map.set(i as u32, v, 0)?;
    }
    Ok(())
}

/// A server as the program sees a packet's source (`Packet::src`) and its port.
fn peer_of(s: &SocketAddr) -> FleetPeer {
    let (addr, family) = match s.ip() {
        std::net::IpAddr::V4(a) => ([u32::from(a), 0, 0, 0], 4),
        std::net::IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], 6)
        }
    };
    FleetPeer {
        addr,
        port: s.port(),
        family,
        _pad: 0,
    }
}
