#!/bin/sh
# The traffic namespace: guard protects gv0 (198.18.0.1); the peer namespace holds the
# sources, one address each: .2 legitimate, .3 denied, .4 limited, .5 denied by a reload,
# .6 banned with escalation, .7 among the 10,000 bans.
set -e
ip netns add peer
ip link add gv0 type veth peer name gv1
ip link set gv1 netns peer
ip addr add 198.18.0.1/24 dev gv0
ip link set gv0 up
ip netns exec peer ip link set lo up
ip netns exec peer ip addr add 198.18.0.2/24 dev gv1
for host in 3 4 5 6 7; do
    ip netns exec peer ip addr add 198.18.0.$host/32 dev gv1
done
ip netns exec peer ip link set gv1 up
