#!/usr/bin/env bash
# Fetches cloud-init's own JSON schema of #cloud-config (schema-cloud-config-v1.json, draft-04) into DEST_DIR.
# cloud-init is not on PyPI; Debian's package ships the schema. Usage: fetch-schema.sh DEST_DIR
# Idempotent: does nothing when DEST_DIR already holds the schema. Needs apt-get and dpkg-deb (Debian, Ubuntu);
# runs `apt-get update` only when the package cannot be downloaded from the lists already there.
set -euo pipefail

SCHEMA=schema-cloud-config-v1.json
IN_PACKAGE=usr/lib/python3/dist-packages/cloudinit/config/schemas/$SCHEMA

fail() { echo "fetch-schema.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || fail "usage: fetch-schema.sh DEST_DIR (received $# arguments)"
dest=$1
[ -s "$dest/$SCHEMA" ] && exit 0
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
    || fail "needs apt-get and dpkg-deb (a Debian or Ubuntu machine) to get cloud-init's $SCHEMA"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
download() { (cd "$work" && apt-get download -qq cloud-init >/dev/null 2>&1); }
if ! download; then
    apt-get update -qq >/dev/null 2>&1 || true  # not root, or offline: the second download says so
    download || fail "apt-get download cloud-init failed (apt-get update did not help): no network, or no apt \
source ships cloud-init"
fi
debs=("$work"/cloud-init_*.deb)
[ -f "${debs[0]}" ] || fail "apt-get download cloud-init left no cloud-init_*.deb in $work"
dpkg-deb -x "${debs[0]}" "$work/root"
[ -s "$work/root/$IN_PACKAGE" ] || fail "$(basename "${debs[0]}") has no $IN_PACKAGE"
mkdir -p "$dest"
# Copied under a temporary name, then renamed: a half-written schema is never taken for a fetched one.
cp "$work/root/$IN_PACKAGE" "$dest/.$SCHEMA.tmp"
mv "$dest/.$SCHEMA.tmp" "$dest/$SCHEMA"
echo "fetch-schema.sh: $dest/$SCHEMA from $(basename "${debs[0]}")"
