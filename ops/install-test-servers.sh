#!/bin/sh
# Installs the system servers the test harness starts (it never relies on a running service):
# PostgreSQL 15 server binaries and redis-server, from Debian's packages when missing; and promtool
# (Debian's prometheus package), which the tests of ops/ run on the Prometheus config and alerts;
# and chromium, the browser the page tests drive (tests/browser; its harness installs it too);
# and npm (with Node.js), which installs axe-core and oidc-provider, the OpenID Provider that
# tests/oidc runs; and Apache with Debian's mod_auth_openidc, a relying party that tests/relying_party
# runs (as a process of its own) against tessera's OpenID Provider; and buildah with mmdebstrap,
# which build the image (ops/Dockerfile) from a base of Debian's packages and run its three
# processes (tests/e2e/test_image.py, `make image`).
set -eu
missing=""
[ -x /usr/lib/postgresql/15/bin/initdb ] || command -v initdb >/dev/null 2>&1 || missing="$missing postgresql-15"
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -x /usr/sbin/apache2 ] || missing="$missing apache2"
[ -f /usr/lib/apache2/modules/mod_auth_openidc.so ] || missing="$missing libapache2-mod-auth-openidc"
command -v buildah >/dev/null 2>&1 || missing="$missing buildah"
command -v mmdebstrap >/dev/null 2>&1 || missing="$missing mmdebstrap"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing:$missing (install them, or run as root so this script can)" >&2
    exit 1
fi
echo "installing:$missing"
apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
# Debian starts the packaged services; the harness runs its own on free ports.
for svc in redis-server postgresql prometheus apache2; do
    (command -v systemctl >/dev/null 2>&1 && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop 2>/dev/null || true
done
