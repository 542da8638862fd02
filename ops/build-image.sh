#!/bin/sh
# Builds tessera's image (ops/Dockerfile) with buildah, where no Docker engine runs and
# python:3.11-slim cannot be pulled: the base is made here from Debian's packages (mmdebstrap
# minbase with python3, python3-venv and python-is-python3) and passed as PYTHON_IMAGE.
# Run from the repository root (`make image` does); extra arguments go to `buildah build`.
#
#   IMAGE       the tag to build        (localhost/tessera:latest)
#   BASE_IMAGE  the base's tag          (localhost/tessera-python:3.11-bookworm); made once, then
#                                        reused: `buildah rmi` it to make it afresh
#   DEBIAN_MIRROR                       (http://deb.debian.org/debian)
#   BUILDAH_ISOLATION                   (chroot: works without a container runtime or user
#                                        namespaces, as on these machines)
#   STORAGE_ROOT  a buildah storage of the build's own (unset: buildah's usual one); there, the
#                 images older builds left are removed after each build (the tests use one)
#
# Layers are cached (`--layers`): with the Dockerfile and the packages' files unchanged, a build
# takes seconds. The builder stage is tagged too (IMAGE-builder), so that its cached layers are
# not dangling images, which `buildah rmi --prune` would remove. pip inside the build reaches the index as this machine's pip does: its index
# URLs, proxy and CA bundle go in as build secrets, mounted for the one step that runs pip, kept in
# no layer and no image history. Proxy variables pass through as buildah always passes them.
set -eu

IMAGE=${IMAGE:-localhost/tessera:latest}
BASE_IMAGE=${BASE_IMAGE:-localhost/tessera-python:3.11-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ISOLATION=${BUILDAH_ISOLATION:-chroot}
PYTHON=${PYTHON:-python3}
STORAGE_ROOT=${STORAGE_ROOT:-}

bah() {
    if [ -n "$STORAGE_ROOT" ]; then
        buildah --root "$STORAGE_ROOT" --runroot "$STORAGE_ROOT/run" "$@"
    else
        buildah "$@"
    fi
}

for tool in buildah mmdebstrap; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "$tool is missing: make system-deps installs it (as root)" >&2
        exit 1
    }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

if ! bah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "making the base $BASE_IMAGE from Debian's packages"
    suite=bookworm
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3 \
        "$suite" "$work/base.tar" \
        "deb $DEBIAN_MIRROR $suite main" \
        "deb $DEBIAN_MIRROR $suite-updates main" \
        "deb ${DEBIAN_MIRROR%/debian}/debian-security $suite-security main" </dev/null
    container=$(bah from scratch)
    bah add --quiet "$container" "$work/base.tar" / >/dev/null
    rm -f "$work/base.tar"
    # What python:3.11-slim's configuration gives a process, so the Dockerfile runs alike on both.
    bah config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd python3 \
        --label org.opencontainers.image.description="Debian bookworm minbase with python3" \
        "$container"
    bah commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
fi

# One of the host's pip settings, the environment's first ($1 is pip's name for it), empty if none.
pip_setting() {
    "$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p" | head -n 1
}
# Only what can reach the build: an index on the network, not a file:// folder of this host.
network_urls() {
    separator=""
    for url in $1; do
        case $url in http://* | https://*) printf '%s%s' "$separator" "$url" && separator=" " ;; esac
    done
}

index_url=$(network_urls "${PIP_INDEX_URL:-$(pip_setting index-url)}")
extra_index_url=$(network_urls "${PIP_EXTRA_INDEX_URL:-$(pip_setting extra-index-url)}")
trusted_host=${PIP_TRUSTED_HOST:-$(pip_setting trusted-host)}
pip_proxy=${PIP_PROXY:-$(pip_setting proxy)}
ca_bundle=${PIP_CERT:-$(pip_setting cert)}
ca_bundle=${ca_bundle:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}}

umask 077 # the pip.conf may hold an index's credentials
{
    echo "[global]"
    [ -n "$index_url" ] && echo "index-url = $index_url"
    [ -n "$extra_index_url" ] && echo "extra-index-url = $extra_index_url"
    [ -n "$trusted_host" ] && echo "trusted-host = $trusted_host"
    [ -n "$pip_proxy" ] && echo "proxy = $pip_proxy"
    [ -f "$ca_bundle" ] && echo "cert = /run/secrets/ca.crt"
    echo "timeout = ${PIP_DEFAULT_TIMEOUT:-60}"
} >"$work/pip.conf"

build() {
    [ -f "$ca_bundle" ] && set -- --secret "id=ca.crt,src=$ca_bundle" "$@"
    # --format docker keeps the HEALTHCHECK, which the OCI image format has no field for.
    bah build --isolation "$ISOLATION" --layers --pull=never --format docker \
        --file ops/Dockerfile --ignorefile ops/Dockerfile.dockerignore \
        --build-arg "PYTHON_IMAGE=$BASE_IMAGE" --secret "id=pip.conf,src=$work/pip.conf" \
        "$@" .
}
build --target builder --tag "$IMAGE-builder"
build --tag "$IMAGE" "$@"
if [ -n "$STORAGE_ROOT" ]; then
    bah rmi --prune >/dev/null
fi
