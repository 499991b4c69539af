#!/bin/sh
# vm-test --system, in the guest (Debian 12, systemd as PID 1): the package as users run it,
# through apt, systemctl, guardctl and the API only. Every step prints
# "GUARD-STEP <name>: PASS|FAIL"; the xtask reads them from the serial console.
# Boot 1 ends with "GUARD-VM: POWER-OFF" (the xtask kills qemu: a hard power-off); boot 2
# checks what survived, upgrades and purges, then prints "GUARD-VM-RESULT: PASS|FAIL".
set -u
. /payload/env # OLD_DEB NEW_DEB NEW_VERSION BANS
PHASE_FILE=/var/lib/vmtest/phase
SOCK=/run/guard/guard.sock
failed=0

say() { echo "GUARD-VM: $*"; }
pass() { echo "GUARD-STEP $1: PASS${2:+ ($2)}"; }
fail() {
    echo "GUARD-STEP $1: FAIL${2:+ ($2)}"
    failed=1
    journalctl -u guard --no-pager -n 8 -o cat | cut -c1-300 | sed 's/^/  guard: /'
}
# check NAME DETAIL CONDITION...: one step from a shell condition.
check() {
    name=$1 detail=$2
    shift 2
    if "$@"; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}

# received SRC COUNT INTERVAL: echo replies the peer namespace got from 198.18.0.1.
received() {
    ip netns exec peer ping -n -q -I "$1" -c "$2" -i "$3" -W 1 198.18.0.1 2>/dev/null |
        awk '/received/ { print $4 }'
}
# api METHOD PATH [JSON-FILE]: the control API over its Unix socket; prints the body.
api() {
    if [ $# -eq 3 ]; then
        curl -sS --unix-socket $SOCK -X "$1" -H 'content-type: application/json' \
            --data-binary @"$3" "http://guard$2"
    else
        curl -sS --unix-socket $SOCK -X "$1" "http://guard$2"
    fi
}
ban_one() { # ban_one CIDR: no TTL, so escalation picks it; prints the ban_number
    printf '{"cidr":"%s","reason":"vm-test escalation"}' "$1" >/tmp/one.json
    api POST /v1/bans /tmp/one.json | jq -r '.applied[0].ban_number'
}
main_pid() { systemctl show -p MainPID --value guard; }
program_id() { guardctl status --json | jq -r '.interfaces[0].program_id'; }
ban_count() { guardctl bans --json | jq '.entries | length'; }
is_active() { [ "$(systemctl is-active guard)" = active ]; }
# owners: guardd's user, the owners of its pinned program and of its database.
owners() {
    echo "$(stat -c %U "/proc/$(main_pid)") $(stat -c %U /sys/fs/bpf/guard/v*/progs/guard)" \
        "$(stat -c %U /var/lib/guard/guard.redb)"
}
eq() { [ "$1" = "$2" ]; }

write_config() { # write_config EXTRA: the test config, EXTRA appended to the rule
    cat >/etc/guard/guard.toml <<TOML
interfaces = ["gv0"]

[[rules]]
name = "ping-limit"
protocol = "icmp"
ipv4_prefix = 32
ipv6_prefix = 64
rate = 5.0
burst = 10
buckets = 1024
$1

[lists]
allow = ["/etc/guard/allow.txt"]
deny = ["/etc/guard/deny.txt"]
TOML
}

# The legitimate source passes, the denied one is dropped (COUNT pings each).
enforced() {
    [ "$(received 198.18.0.2 5 0.3)" = 5 ] && [ "$(received 198.18.0.3 3 0.3)" = 0 ]
}

phase1() {
    say "boot 1: install, enable, traffic, reload, restart, bans"
    if apt-get install -y -q "/payload/$OLD_DEB" >/tmp/apt.log 2>&1 &&
        [ "$(dpkg-query -W -f '${Status}' guard)" = "install ok installed" ]; then
        pass "apt install ./$OLD_DEB"
    else
        fail "apt install ./$OLD_DEB"
        tail -20 /tmp/apt.log
    fi
    write_config ""
    echo "198.18.0.3" >/etc/guard/deny.txt
    : >/etc/guard/allow.txt
    systemctl enable --now guard >/tmp/enable.log 2>&1
    check "systemctl enable --now guard: active (READY)" "$(systemctl show -p ActiveState,SubState --value guard | paste -sd/)" \
        is_active

    # The unit's sandbox, as systemd scores it on this host; every step after runs under it.
    # What is left is CAP_BPF/CAP_NET_ADMIN (ambient, for user guard), the network and
    # AF_NETLINK (link events, interface addresses); ProtectKernelTunables= would make the
    # pins read-only.
    exposure=$(systemd-analyze security guard.service 2>/dev/null | awk '/Overall exposure level/ { print $(NF-2) }')
    say "FIGURES exposure=$exposure"
    check "systemd-analyze security guard.service: exposure at most 2.0" "$exposure" \
        awk -v e="$exposure" 'BEGIN { exit !(e != "" && e + 0 <= 2.0) }'
    check "guardd runs as user guard, its pins and database guard's" \
        "$(owners)" eq "$(owners)" "guard guard guard"
    nofile=$(awk '/Max open files/ { print $4 }' "/proc/$(main_pid)/limits")
    check "guardd's descriptor limit is the unit's" "soft $nofile" eq "$nofile" 65536

    legit=$(received 198.18.0.2 5 0.3)
    denied=$(received 198.18.0.3 3 0.3)
    # The limited source floods (ping -f: as fast as replies come, at least every 10 ms);
    # the rule admits burst + rate x (T + refill_period) at most.
    flood=$(ip netns exec peer ping -n -q -f -I 198.18.0.4 -c 300 -w 10 198.18.0.1 2>/dev/null)
    got=$(echo "$flood" | awk '/received/ { print $4 }')
    ms=$(echo "$flood" | awk '/received/ { for (i = 1; i <= NF; i++) if ($i ~ /ms$/) { sub("ms", "", $i); print $i } }')
    bound=$(awk -v ms="$ms" 'BEGIN { printf "%d", 10 + 5 * (ms / 1000 + 1) }')
    check "traffic: legitimate passes" "$legit of 5" eq "$legit" 5
    check "traffic: denied source dropped" "$denied of 3 answered" eq "$denied" 0
    check "traffic: limited source held to its rate" "$got of 300 answered in ${ms} ms, bound $bound" \
        sh -c "[ '$got' -ge 1 ] && [ '$got' -le '$bound' ]"

    # systemctl reload: a new list applies ...
    echo "198.18.0.5" >>/etc/guard/deny.txt
    pid=$(main_pid)
    if systemctl reload guard 2>/tmp/reload.log; then ok=yes; else ok=no; fi
    five=$(received 198.18.0.5 3 0.3)
    check "systemctl reload: new deny entry applied" "reload ok=$ok, 198.18.0.5 answered $five of 3" \
        sh -c "[ $ok = yes ] && [ '$five' = 0 ] && [ '$(main_pid)' = '$pid' ]"
    # ... an invalid config is refused, and the service keeps running on the old one.
    write_config "no_such_key = 1"
    if systemctl reload guard 2>/tmp/reload.log; then ok=yes; else ok=no; fi
    # The reason reaches `systemctl status guard` (guardctl's answer, in the unit's journal).
    why=$(systemctl status guard --no-pager -n 5 | grep -c 'no_such_key')
    check "systemctl reload: invalid config refused, service stays active" \
        "reload ok=$ok, $(systemctl is-active guard), reason in systemctl status: $why line(s)" \
        sh -c "[ $ok = no ] && [ '$(systemctl is-active guard)' = active ] && [ '$(main_pid)' = '$pid' ] && [ '$why' -ge 1 ]"
    check "after the refused reload: old config still enforced" "" enforced
    write_config ""
    systemctl reload guard

    pid=$(main_pid)
    prog=$(program_id)
    systemctl restart guard
    pid2=$(main_pid)
    prog2=$(program_id)
    check "systemctl restart: program id kept" "pid $pid -> $pid2, program $prog -> $prog2" \
        sh -c "[ '$(systemctl is-active guard)' = active ] && [ '$prog2' = '$prog' ] && [ '$pid2' != '$pid' ] && [ '$prog' != null ]"

    # The phase is written before the bans, so nothing the bans need is flushed by this sync.
    mkdir -p "$(dirname $PHASE_FILE)"
    echo 2 >$PHASE_FILE
    sync
    n1=$(ban_one 198.18.0.6)
    n2=$(ban_one 198.18.0.6)
    check "escalation: the second ban of a source is its second" "ban_number $n1 then $n2" \
        sh -c "[ '$n1' = 1 ] && [ '$n2' = 2 ]"
    # BANS bans in calls of 1,000 through the API; 198.18.0.7 is the last one.
    acked=0
    durable=true
    for chunk in /payload/bans/*.json; do
        answer=$(api POST /v1/bans "$chunk")
        n=$(echo "$answer" | jq '.applied | length' 2>/dev/null)
        acked=$((acked + ${n:-0}))
        [ "$(echo "$answer" | jq '.durable')" = true ] || durable=false
    done
    check "$BANS bans through the API, acknowledged durable" "$acked acknowledged, durable=$durable" \
        sh -c "[ $acked = $BANS ] && [ $durable = true ]"
    # No shutdown, no sync: the xtask kills qemu as soon as it reads this line.
    say "POWER-OFF acked=$acked failed=$failed"
    sleep 600
}

phase2() {
    say "boot 2: after a hard power-off"
    # This unit starts after guard.service is active, that is after guardd's READY.
    count=$(ban_count)
    start=$(systemctl show -p ExecMainStartTimestampMonotonic --value guard)
    ready=$(systemctl show -p ActiveEnterTimestampMonotonic --value guard)
    took=$(awk -v a="$start" -v b="$ready" 'BEGIN { printf "%.2f", (b - a) / 1e6 }')
    expected=$((BANS + 1))
    bulk=$(guardctl bans --json | jq '[.entries[] | select(.reason == "vm-test bulk")] | length')
    say "FIGURES bulk_in_force=$bulk start_to_ready_secs=$took"
    check "boot: guard active with every acknowledged ban in force at READY" \
        "$count of $expected bans, guardd start to READY ${took} s" \
        sh -c "[ '$(systemctl is-active guard)' = active ] && [ '$count' = $expected ]"
    # Restored into the maps before the program is attached: no window without the bans.
    order=$(journalctl -u guard -b -o cat | grep -E -o 'restored bans|attached iface' | paste -sd,)
    check "boot: bans restored before XDP is attached" "$order" eq "$order" "restored bans,attached iface"
    seven=$(received 198.18.0.7 3 0.3)
    check "boot: a restored ban drops its source" "198.18.0.7 answered $seven of 3" eq "$seven" 0
    check "boot: lists enforced" "" enforced
    n3=$(ban_one 198.18.0.6)
    check "boot: escalation count kept (third ban is the third)" "ban_number $n3" eq "$n3" 3

    # What a release that ran guardd as root left: its pins, database and socket root's
    # (0600). The upgrade's start makes them guard's (ExecStartPre=, StateDirectory=).
    chown -R root:root /sys/fs/bpf/guard /var/lib/guard /run/guard
    pid=$(main_pid)
    prog=$(program_id)
    ip netns exec peer ping -n -q -I 198.18.0.7 -c 40 -i 0.25 -W 1 198.18.0.1 >/tmp/banned.ping 2>&1 &
    b=$!
    ip netns exec peer ping -n -q -I 198.18.0.2 -c 40 -i 0.25 -W 1 198.18.0.1 >/tmp/legit.ping 2>&1 &
    l=$!
    if apt-get install -y -q "/payload/$NEW_DEB" >/tmp/apt.log 2>&1; then ok=yes; else ok=no; fi
    wait $b $l
    banned=$(awk '/received/ { print $4 }' /tmp/banned.ping)
    legit=$(awk '/received/ { print $4 }' /tmp/legit.ping)
    version=$(dpkg-query -W -f '${Version}' guard)
    check "after the upgrade from root's files: guardd, its pins and database are guard's" \
        "$(owners)" eq "$(owners)" "guard guard guard"
    check "apt install of the newer build: enforcement kept through the upgrade" \
        "apt ok=$ok, version $version, pid $pid -> $(main_pid), program $prog -> $(program_id), banned answered $banned of 40, legitimate $legit of 40, $(ban_count) bans" \
        sh -c "[ $ok = yes ] && [ '$version' = '$NEW_VERSION' ] && [ '$(systemctl is-active guard)' = active ] && [ '$(main_pid)' != '$pid' ] && [ '$(program_id)' = '$prog' ] && [ '$banned' = 0 ] && [ '$legit' = 40 ] && [ '$(ban_count)' = $((BANS + 1)) ]"

    if apt-get purge -y -q guard >/tmp/apt.log 2>&1; then ok=yes; else ok=no; fi
    left=""
    for p in /etc/guard /var/lib/guard /sys/fs/bpf/guard /run/guard /usr/sbin/guardd /usr/sbin/guardctl \
        /usr/lib/systemd/system/guard.service /lib/systemd/system/guard.service \
        /etc/systemd/system/multi-user.target.wants/guard.service; do
        [ -e "$p" ] && left="$left $p"
    done
    ip -d link show gv0 | grep -q xdp && left="$left xdp-on-gv0"
    denied=$(received 198.18.0.3 3 0.3)
    check "apt purge: everything removed" "apt ok=$ok, left:${left:- nothing}, 198.18.0.3 answered $denied of 3" \
        sh -c "[ $ok = yes ] && [ -z '$left' ] && [ '$denied' = 3 ] && ! dpkg-query -W guard >/dev/null 2>&1"
}

if [ -e $PHASE_FILE ]; then phase2; else phase1; fi
if [ $failed = 0 ]; then echo "GUARD-VM-RESULT: PASS"; else echo "GUARD-VM-RESULT: FAIL"; fi
systemctl poweroff
