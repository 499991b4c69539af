//! The maps' names are written once, in `guard_common::map_names` (the eBPF statics are named
//! as they are, and `#[map]` takes a static's name): the built object holds exactly those maps,
//! so a map added, renamed or dropped on one side fails here rather than at load.

use guard_common::map_names;

fn maps_of(object: &[u8]) -> Vec<String> {
    let obj = aya_obj::Object::parse(object).expect("the embedded object parses");
    let mut names: Vec<String> = obj
        .maps
        .keys()
        // .bss, .data, .rodata: the program's globals, not maps it pins.
        .filter(|name| !name.starts_with('.'))
        .cloned()
        .collect();
    names.sort();
    names
}

#[test]
fn the_shipped_object_holds_exactly_the_named_maps() {
    let mut want: Vec<String> = map_names::ALL.iter().map(|n| n.to_string()).collect();
    want.sort();
    assert_eq!(maps_of(guard_user::kernel::objects::guard()), want);
}
