#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries if missing (no cluster started); print their bin dir.
#
# Usage: PG_BIN="$(scripts/ensure_postgres.sh)"
# Only the bin dir goes to stdout; apt's progress goes to stderr. When PostgreSQL is already
# installed this prints the bin dir and nothing else. The tests start their own throwaway
# clusters (tests/support/postgres.py), so the distribution's cluster is neither created on a
# fresh install nor started.
set -euo pipefail

find_bin_dir() {
    local dir best=""
    # Newest major version wins (e.g. 16 over 15); sort -V orders "9.6" < "15".
    while IFS= read -r dir; do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" && -x "$dir/postgres" ]]; then
            best="$dir"
        fi
    done < <(compgen -G '/usr/lib/postgresql/*/bin' | sort -V || true)
    [[ -n "$best" ]] && printf '%s\n' "$best"
}

if bin_dir="$(find_bin_dir)"; then
    printf '%s\n' "$bin_dir"
    exit 0
fi

die() {
    printf 'ensure_postgres: %s\n' "$*" >&2
    exit 1
}

command -v apt-get >/dev/null 2>&1 ||
    die "no initdb under /usr/lib/postgresql/*/bin and no apt-get: install the PostgreSQL server yourself"

as_root=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 ||
        die "PostgreSQL is not installed and installing it needs root (no sudo found)"
    as_root=(sudo --non-interactive)
fi

printf 'ensure_postgres: installing Debian'\''s postgresql package...\n' >&2

# Keep maintainer scripts from starting services (the standard policy-rc.d convention).
# Only add one if none exists, and remove exactly the one we added.
policy=/usr/sbin/policy-rc.d
added_policy=""
cleanup() {
    if [[ -n "$added_policy" ]]; then
        "${as_root[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# Temporary, from idservice scripts/ensure_postgres.sh.\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    added_policy=1
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2

# Install postgresql-common first and switch off the "main" cluster that the server package
# would otherwise create (and, under systemd, start at boot); this is what the official
# postgres image does.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql-common >&2
conf=/etc/postgresql-common/createcluster.conf
if [[ -f "$conf" ]] && ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=' "$conf"; then
    printf '\n# Added by idservice scripts/ensure_postgres.sh: tests use throwaway clusters.\ncreate_main_cluster = false\n' |
        "${as_root[@]}" tee -a "$conf" >/dev/null
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends postgresql >&2

bin_dir="$(find_bin_dir)" ||
    die "apt-get installed postgresql but no initdb was found under /usr/lib/postgresql/*/bin"
printf '%s\n' "$bin_dir"
