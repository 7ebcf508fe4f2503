#!/usr/bin/env bash
# Idempotent set-up shared by `make run`, `make test` and `make bench`:
# system packages, the .venv, the project install and the generated gRPC code.
set -euo pipefail
cd "$(dirname "$0")/.."

# slapd + ldap-utils: the LDAP login tests start their own slapd (tests/ldapkit.py).
APT_PACKAGES=(etcd-server etcd-client nftables iproute2 slapd ldap-utils)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # The package may start a system-wide slapd on port 389; the tests run their own on
    # 127.0.0.1, so do not leave the system one running.
    if [[ " ${missing[*]} " == *" slapd "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now slapd >/dev/null 2>&1 || true
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi

stamp_src=$(cat pyproject.toml proto/*.proto bench/*.proto scripts/setup.sh scripts/gen_proto.py | sha256sum | cut -d' ' -f1)
if [ ! -f .setup-stamp ] || [ "$(cat .setup-stamp)" != "$stamp_src" ] || [ ! -d zones/api/gen ] || [ ! -d bench/gen ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
    .venv/bin/python -m scripts.gen_proto
    echo "$stamp_src" > .setup-stamp
fi
