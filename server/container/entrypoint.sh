#!/bin/sh
# The container's PID 1: the firewall, sshd and knockd, then the rotator in the
# foreground (--follow). The secret comes as a mounted file, never an argument or a
# variable: CREDENTIALS_DIRECTORY=/run/secrets with the secret in /run/secrets/secret
# (as `podman run --secret` and `docker run --secret` mount it).
set -eu
: "${CREDENTIALS_DIRECTORY:=/run/secrets}"
export CREDENTIALS_DIRECTORY
if [ ! -s "$CREDENTIALS_DIRECTORY/secret" ] && [ -z "${KNOCKD_ROTATOR_SECRET:-}" ]; then
  echo "knockssh-server: no secret: mount it at $CREDENTIALS_DIRECTORY/secret" >&2
  exit 1
fi
iface=${KNOCKD_INTERFACE:-$(ip -o route show default | awk '{print $5; exit}')}
if [ ! -e /etc/knockd.conf ]; then  # else the one mounted there (writable: it is rotated)
  umask 077
  sed "s/^\( *Interface *=\).*/\1 $iface/" /etc/knockd.conf.example > /etc/knockd.conf
fi
sh /usr/local/lib/knockssh/firewall.iptables.sh
mkdir -p /run/sshd
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -A
/usr/sbin/sshd
knockssh-rotator --config /etc/knockd.conf --no-reload --no-schedule
knockd -d -c /etc/knockd.conf -p /run/knockd.pid
exec knockssh-rotator --follow --config /etc/knockd.conf --pidfile /run/knockd.pid
