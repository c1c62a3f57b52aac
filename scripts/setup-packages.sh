#!/usr/bin/env bash
# make setup-packages: the pinned packaging tools, from crates.io (cargo install --locked), when
# the installed one is not that version. The packages themselves build offline.
set -euo pipefail
CARGO=${CARGO:-cargo}
pin() { # crate version binary
  if [ "$("$3" --version 2>/dev/null | awk '{print $NF}')" = "$2" ] ||
    [ "$($CARGO "${3#cargo-}" --version 2>/dev/null | awk '{print $NF}')" = "$2" ]; then
    return 0
  fi
  echo "setup-packages: installing $1 $2"
  $CARGO install --quiet --locked "$1" --version "$2"
}
pin cargo-deb 3.7.0 cargo-deb
pin cargo-generate-rpm 0.16.0 cargo-generate-rpm
