#!/bin/sh
# Shell usage of knockssh (secrets come from files or the environment, never argv).
export KNOCKD_ROTATOR_SECRET="$(cat ~/.config/knockssh/bastion.secret)"
knockssh generate ssh                  # this period's sequence, one line
knockssh generate ssh --offset -1      # the previous period's
knockssh knock bastion.example.org     # knock only (mapping file entry)
knockssh knock 203.0.113.7 ssh         # knockd_rotator's argument order
knockssh check                         # validate hosts.toml, show entropy and next rotation
knockssh add bastion.example.org --secret-stdin < bastion.secret   # a new host entry
knockssh enroll < alice.line           # the line a server's "client add" printed for you
knockssh --version
knockssh-ssh bastion.example.org uptime
knockssh-scp ./file bastion.example.org:/tmp/
knockssh-rsync -a -e "ssh -p 2222" ./dir/ bastion.example.org:dir/
# on the server, as root
knockssh-rotator init                  # env file with a new secret; prints the setup script
knockssh-rotator check                 # what is wrong, and the command that fixes it
knockssh-rotator client add alice > alice.line   # a door of alice's own; give her the line
knockssh-rotator client revoke alice   # her door and secret gone; everyone else's stay
