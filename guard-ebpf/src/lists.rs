//! Step 2/3 of the pipeline: the allow/deny lookup (layout in `guard_common::lists`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap},
};
use guard_common::{
    ListCode, RuntimeConfig, V6Key,
    lists::{
        self, Bitmap512, MAX_V6_LENS, V4_DIR24_ENTRIES, V4_TBL8_ENTRIES, V6_PREFIX_ENTRIES,
        V6_TOP24_ENTRIES,
    },
};
use guard_ebpf::parse::Source;

#[map(name = "V4_DIR24")]
static V4_DIR24: Array<Bitmap512> = Array::with_max_entries(V4_DIR24_ENTRIES, 0);

#[map(name = "V4_TBL8")]
static V4_TBL8: HashMap<u32, Bitmap512> =
    HashMap::with_max_entries(V4_TBL8_ENTRIES, BPF_F_NO_PREALLOC);

#[map(name = "V6_TOP24")]
static V6_TOP24: Array<Bitmap512> = Array::with_max_entries(V6_TOP24_ENTRIES, 0);

#[map(name = "V6_PREFIX")]
static V6_PREFIX: HashMap<V6Key, u32> =
    HashMap::with_max_entries(V6_PREFIX_ENTRIES, BPF_F_NO_PREALLOC);

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
    let (elem, bit) = lists::v6_top24_slot(u32::from_be(addr[0]));
    match V6_TOP24.get(elem) {
        Some(bits) if bits.bit(bit) => {}
        _ => return ListCode::None,
    }
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
    ListCode::None
}
