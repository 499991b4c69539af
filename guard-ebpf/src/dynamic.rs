//! Steps 2b/3b of the pipeline: temporary allows and bans (layout in
//! `guard_common::dynamic`). The TTL is checked here, against CLOCK_MONOTONIC, so entries
//! expire on time whether or not the daemon runs.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_coarse_ns,
    macros::map,
    maps::{Array, HashMap},
};
use guard_common::{
    RuntimeConfig, V6Key,
    dynamic::{
        BanHistory, DYN_CAPACITY, DYN_REGION_ELEMS, DynEntry, DynKeyV4, DynMeta, DynMetaKey,
        KIND_ALLOW, KIND_VOUCH, MAX_DYN_LENS, v4_region, v6_region,
    },
    lists::Bitmap512,
};
use guard_ebpf::parse::Source;

#[map]
static DYN_V4: HashMap<DynKeyV4, DynEntry> =
    HashMap::with_max_entries(DYN_CAPACITY, BPF_F_NO_PREALLOC);

#[map]
static DYN_V6: HashMap<V6Key, DynEntry> =
    HashMap::with_max_entries(DYN_CAPACITY, BPF_F_NO_PREALLOC);

/// Regions holding entries: a clear bit answers "no entry" without probing the hashes.
#[map]
static DYN_REGIONS: Array<Bitmap512> = Array::with_max_entries(DYN_REGION_ELEMS, 0);

/// Reasons and creation times: the daemon's, never read here; declared in the object so
/// they are created and pinned with the rest.
#[map]
static DYN_META: HashMap<DynMetaKey, DynMeta> =
    HashMap::with_max_entries(DYN_CAPACITY, BPF_F_NO_PREALLOC);

/// Escalation history: the daemon's, like `DYN_META`.
#[map]
static BAN_HIST: HashMap<DynMetaKey, BanHistory> =
    HashMap::with_max_entries(DYN_CAPACITY, BPF_F_NO_PREALLOC);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    None,
    Allow,
    Ban,
    /// A live vouch and no ban: passes an empty endpoint budget, nothing else.
    Vouch,
}

#[inline(always)]
pub fn lookup(src: &Source, cfg: &RuntimeConfig) -> Dynamic {
    let lens = &cfg.dyn_lens;
    let region = match src {
        Source::V4(addr) => v4_region(*addr),
        Source::V6(words) => v6_region(u32::from_be(words[0])),
    };
    match DYN_REGIONS.get(region / 512) {
        Some(bits) if bits.bit(region % 512) => {}
        _ => return Dynamic::None,
    }
    // An allow anywhere decides; else a ban anywhere; else a vouch.
    let (mut banned, mut vouched) = (false, false);
    match src {
        Source::V4(addr) => {
            for i in 0..MAX_DYN_LENS {
                if i as u32 >= lens.v4_count {
                    break;
                }
                // SAFETY: read-only use of the value.
                if let Some(e) = unsafe { DYN_V4.get(&lens.v4[i].key(*addr)) } {
                    match judge(e) {
                        Dynamic::Allow => return Dynamic::Allow,
                        Dynamic::Ban => banned = true,
                        Dynamic::Vouch => vouched = true,
                        Dynamic::None => {}
                    }
                }
            }
        }
        Source::V6(words) => {
            for i in 0..MAX_DYN_LENS {
                if i as u32 >= lens.v6_count {
                    break;
                }
                if let Some(e) = unsafe { DYN_V6.get(&lens.v6[i].key(words)) } {
                    match judge(e) {
                        Dynamic::Allow => return Dynamic::Allow,
                        Dynamic::Ban => banned = true,
                        Dynamic::Vouch => vouched = true,
                        Dynamic::None => {}
                    }
                }
            }
        }
    }
    if banned {
        Dynamic::Ban
    } else if vouched {
        Dynamic::Vouch
    } else {
        Dynamic::None
    }
}

/// What a found entry says now: nothing once its TTL has passed. The jiffy clock (a few
/// ms behind the precise one) is far cheaper and lets an entry outlive its TTL by a jiffy
/// at most.
#[inline(always)]
fn judge(e: &DynEntry) -> Dynamic {
    if !e.live(unsafe { bpf_ktime_get_coarse_ns() }) {
        Dynamic::None
    } else if e.kind == KIND_ALLOW {
        Dynamic::Allow
    } else if e.kind == KIND_VOUCH {
        Dynamic::Vouch
    } else {
        Dynamic::Ban
    }
}
