#!/usr/bin/env bash
# The knockssh lab: real knockd + sshd + firewall in network namespaces (root).
#   server/lab/lab.sh install          Debian packages the lab needs
#   server/lab/lab.sh up|status|down   [--name N] [--firewall iptables|nftables] [--link P]
#                                      [--host netns|systemd|container]
#   server/lab/lab.sh demo [--link P]  up, ssh through knockssh showing each step, down
#   --link: lan (veth, default), wan, mobile, lossy, or delay=..,jitter=..,loss=..,dup=..,rate=..
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
if [ "${1:-}" != install ] && [ "${1:-}" != down ] && [ "${1:-}" != status ]; then
  "$python" "$here/lab.py" install
fi
if [ "${1:-}" = up ]; then
  # a failed 'up' tears down what it made (lab.py does too; this covers signals)
  name=knocklab; args=("$@")
  for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = --name ] && name=${args[$((i + 1))]}; done
  trap '"$python" "$here/lab.py" down --name "$name" >/dev/null 2>&1' INT TERM
  "$python" "$here/lab.py" "$@" || { "$python" "$here/lab.py" down --name "$name" >/dev/null 2>&1; exit 1; }
  exit 0
fi
exec "$python" "$here/lab.py" "$@"
