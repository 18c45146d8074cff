#!/bin/sh
# Base rules, for IPv4 and IPv6 alike: established sessions stay up after the door
# closes; new ssh is dropped unless knockd's start_command (start_command_6 for an
# IPv6 knocker) inserted an ACCEPT for the knocker's address. Leaving IPv6 out would
# leave sshd reachable over IPv6 without any knock on a dual-stack server.
set -e
for ipt in iptables ip6tables; do
  $ipt -C INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null \
    || $ipt -I INPUT 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
  $ipt -C INPUT -p tcp --dport 22 -j DROP 2>/dev/null \
    || $ipt -A INPUT -p tcp --dport 22 -j DROP
done
