# Sourced by the project's scripts: where the bootstrapped Nix lives (outside any clone,
# so CI's fresh clones and every checkout on this machine share one build).
EVIX_CACHE_DIR=${EVIX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/evix}
EVIX_NIX_VERSION=2.26.3
EVIX_NIX_PREFIX=${EVIX_NIX_PREFIX:-$EVIX_CACHE_DIR/nix-$EVIX_NIX_VERSION}
EVIX_NIX_STAMP=$EVIX_NIX_PREFIX/.evix-bootstrap-complete

# True when the machine already has a Nix C API we can use (a Nix user's machine); our own
# build does not count here, so its stamp stays the only proof that it is finished.
evix_system_nix_capi() {
  pkg-config --atleast-version=2.26 nix-expr-c 2>/dev/null &&
    [ "$(pkg-config --variable=prefix nix-expr-c)" != "$EVIX_NIX_PREFIX" ]
}

# Puts the bootstrapped Nix (if that is the one we use) on PATH and PKG_CONFIG_PATH.
evix_use_nix() {
  if [ -f "$EVIX_NIX_STAMP" ]; then
    export PATH="$EVIX_NIX_PREFIX/bin:$PATH"
    export PKG_CONFIG_PATH="$EVIX_NIX_PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  fi
}
