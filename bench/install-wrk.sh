#!/bin/sh
# Installs wrk (the HTTP load generator `make bench` drives, with LuaJIT for its scripts) from
# Debian's packages when it is missing. PostgreSQL and Redis come from ops/install-test-servers.sh.
set -eu
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing: wrk (install it, or run as root so this script can)" >&2
    exit 1
fi
echo "installing: wrk"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
