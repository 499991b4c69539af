//! Step 2/3 of the pipeline: the allow/deny lookup (layout in `guard_common::lists`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap},
};
use guard_common::{
    ListCode, RuntimeConfig, V6Key,
    lists::{
        self, Bitmap512, MAX_V6_LENS, V4_DIR24_ENTRIES, V4_TBL8_ENTRIES, V6_LONGER, V6_MAX_LEVELS,
        V6_NODE, V6_NODES_ENTRIES, V6_PREFIX_ENTRIES, V6_ROOT_BITS, V6_ROOT_ENTRIES, V6_STRIDE,
        V6_TOP24_ENTRIES, V6Node,
    },
};
use guard_ebpf::parse::Source;

#[map]
static V4_DIR24: Array<Bitmap512> = Array::with_max_entries(V4_DIR24_ENTRIES, 0);

#[map]
static V4_TBL8: HashMap<u32, Bitmap512> =
    HashMap::with_max_entries(V4_TBL8_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static V6_TOP24: Array<Bitmap512> = Array::with_max_entries(V6_TOP24_ENTRIES, 0);

#[map]
static V6_PREFIX: HashMap<V6Key, u32> =
    HashMap::with_max_entries(V6_PREFIX_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static V6_ROOT: Array<u32> = Array::with_max_entries(V6_ROOT_ENTRIES, 0);

#[map]
static V6_NODES: Array<V6Node> = Array::with_max_entries(V6_NODES_ENTRIES, 0);

#[inline(always)]
pub fn code(src: &Source, cfg: &RuntimeConfig) -> ListCode {
    match src {
        Source::V4(addr) => v4_code(*addr),
        Source::V6(addr) => v6_code(addr, cfg),
    }
}

#[inline(always)]
fn v4_code(addr: u32) -> ListCode {
    let (elem, pos) = lists::v4_dir24_slot(addr);
    let Some(codes) = V4_DIR24.get(elem) else {
        return ListCode::None;
    };
    match codes.code(pos) {
        ListCode::Split => {
            let (key, host) = lists::v4_tbl8_slot(addr);
            // SAFETY: read only; a concurrent update replaces 2-bit codes that are each
            // either the old or the new answer.
            match unsafe { V4_TBL8.get(&key) } {
                Some(hosts) => hosts.code(host),
                None => ListCode::None,
            }
        }
        code => code,
    }
}

#[inline(always)]
fn v6_code(addr: &[u32; 4], cfg: &RuntimeConfig) -> ListCode {
    let words = [
        u32::from_be(addr[0]),
        u32::from_be(addr[1]),
        u32::from_be(addr[2]),
        u32::from_be(addr[3]),
    ];
    let (elem, bit) = lists::v6_top24_slot(words[0]);
    match V6_TOP24.get(elem) {
        Some(bits) if bits.bit(bit) => {}
        _ => return ListCode::None,
    }
    let Some(&root) = V6_ROOT.get(words[0] >> (32 - V6_ROOT_BITS)) else {
        return ListCode::None;
    };
    // Down the trie until an entry is a code: one read per 4 bits.
    let mut entry = root;
    let mut depth = V6_ROOT_BITS;
    for _ in 0..V6_MAX_LEVELS {
        if entry & V6_NODE == 0 {
            break;
        }
        let Some(node) = V6_NODES.get(entry & !V6_NODE) else {
            return ListCode::None;
        };
        entry = node.0[(lists::v6_nibble(&words, depth) & 15) as usize];
        depth += V6_STRIDE;
    }
    if entry & V6_NODE != 0 {
        return ListCode::None;
    }
    if entry & V6_LONGER != 0 {
        // Longer prefixes than the trie's lie here: theirs is the longer match.
        for i in 0..MAX_V6_LENS {
            if i as u32 >= cfg.v6_len_count {
                break;
            }
            let key = cfg.v6_lens[i].key(addr);
            // SAFETY: read-only use of a u32 value.
            if let Some(code) = unsafe { V6_PREFIX.get(&key) } {
                return ListCode::from_bits(*code as u64);
            }
        }
    }
    ListCode::from_bits(entry as u64)
}
