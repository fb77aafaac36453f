#!/usr/bin/env bash
# Downloads the newest Debian cloud kernel package (the linux-image-*-cloud-amd64 that the
# meta-package linux-image-cloud-amd64 depends on, or the one that META names) into cowcheck's
# cache, debs/, where tests/vm.rs finds it and `--kernel` can take it:
#
#   scripts/fetch-kernel.sh [META]      # META defaults to linux-image-cloud-amd64
#   scripts/fetch-kernel.sh all         # the newest of every series the archive offers
#                                       # (linux-image-cloud-amd64, linux-image-6.12-cloud-amd64,
#                                       # ...): `cowcheck matrix`'s default kernels
#   cowcheck run --kernel "$(scripts/fetch-kernel.sh)" --cases 2000
#
# Prints the package's path (with `all`, one line per series). Uses `apt-get download` (no root needed
# once the package lists are there; as root it runs `apt-get update` when they are not).
# The cache is $COWCHECK_CACHE_DIR, else $XDG_CACHE_HOME/cowcheck, else ~/.cache/cowcheck, as
# cowcheck itself reads it (docs/KERNELS.md).
set -euo pipefail

meta="${1:-linux-image-cloud-amd64}"
if [ "$meta" = all ]; then
  metas="$(apt-cache pkgnames linux-image- | grep -E '^linux-image-([0-9]+\.[0-9]+-)?cloud-amd64$' | sort || true)"
  if [ -z "$metas" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2
    metas="$(apt-cache pkgnames linux-image- | grep -E '^linux-image-([0-9]+\.[0-9]+-)?cloud-amd64$' | sort || true)"
  fi
  if [ -z "$metas" ]; then
    echo "fetch-kernel: apt knows no linux-image-*cloud-amd64 (run apt-get update, on Debian or a derivative)" >&2
    exit 1
  fi
  for m in $metas; do
    "$0" "$m"
  done
  exit 0
fi
if [ -n "${COWCHECK_CACHE_DIR:-}" ]; then
  cache="$COWCHECK_CACHE_DIR"
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
  cache="$XDG_CACHE_HOME/cowcheck"
else
  cache="$HOME/.cache/cowcheck"
fi

image_of() {
  apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

pkg="$(image_of)"
if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq >&2
  pkg="$(image_of)"
fi
if [ -z "$pkg" ]; then
  echo "fetch-kernel: apt knows no $meta (run apt-get update, on Debian or a derivative)" >&2
  exit 1
fi

mkdir -p "$cache/debs"
cd "$cache/debs"
found="$(ls "${pkg}"_*.deb 2>/dev/null | head -n 1 || true)"
if [ -z "$found" ]; then
  sandbox=()
  if [ "$(id -u)" = 0 ]; then
    sandbox=(-o APT::Sandbox::User=root)  # _apt cannot write to root's cache
  fi
  apt-get download "${sandbox[@]}" "$pkg" >&2
  found="$(ls "${pkg}"_*.deb | head -n 1)"
  echo "fetch-kernel: downloaded $pkg" >&2
else
  echo "fetch-kernel: $pkg is already in the cache" >&2
fi
echo "$cache/debs/$found"
