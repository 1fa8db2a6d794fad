# The realistic benchmark set (bench/README.md): a nixpkgs-shaped package set whose stdenv
# comes out of a six-stage bootstrap (bootstrap.nix), with scopes, overrides, aliases, failing
# packages of every kind, and two variant sets (pkgsi686Linux, pkgsStatic) that bootstrap
# again for their platform. The packages are generated (generated.nix, packages-*.nix); the rest is static.
{ withFunctions ? true }:
let
  lib = import ./lib.nix;
  systems = import ./systems.nix lib;
  config = { allowUnfree = false; allowBroken = false; allowUnsupportedSystem = false; allowInsecure = false; };
  makeDerivation = import ./make-derivation.nix { inherit lib; checkMeta = import ./check-meta.nix; };
  makeStdenv = import ./stdenv.nix { inherit lib makeDerivation; };
  generated = import ./generated.nix { inherit lib withFunctions; };
  packageSet = import ./package-set.nix { inherit lib config; generated = generated.overlays; };
  bootstrap = import ./bootstrap.nix { inherit lib makeStdenv packageSet config; };

  # the package set of one platform: bootstrap its stdenv, then instantiate the set on it
  pkgsFor = platform: overlays:
    let boot = bootstrap (systems.elaborate platform); in
    packageSet { inherit (boot) stdenv; overlays = [ (self: super: boot.fromLastStage) ] ++ overlays; };
  i686 = pkgsFor { system = "i686-linux"; } [ ];
  static = pkgsFor { system = "x86_64-linux"; abi = "musl"; isStatic = true; } [ ];
  variants = self: super: {
    pkgsi686Linux = lib.recurseIntoAttrs (lib.genAttrs generated.variants.i686 (n: i686.${n}));
    pkgsStatic = lib.recurseIntoAttrs (lib.genAttrs generated.variants.static (n: static.${n}));
  } // lib.genAttrs' generated.variants.i686Aliases (n: lib.nameValuePair "${n}_i686" self.pkgsi686Linux.${n});
in
pkgsFor { system = "x86_64-linux"; } [ variants ]
