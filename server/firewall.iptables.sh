#!/bin/sh
# Base rules: established sessions stay up after the door closes; new ssh is dropped
# unless knockd's start_command inserted an ACCEPT for the knocker's address.
iptables -C INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT 2>/dev/null \
  || iptables -I INPUT 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
iptables -C INPUT -p tcp --dport 22 -j DROP 2>/dev/null \
  || iptables -A INPUT -p tcp --dport 22 -j DROP
