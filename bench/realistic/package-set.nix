# One instance of the package set on one stdenv, as nixpkgs' top-level/stage.nix: the base
# attributes, the toolchain, the generated packages and scopes, the aliases, then the caller's
# overlays, folded into one fixed point. The bootstrap makes one per stage.
{ lib, config, generated }:
{ stdenv, overlays ? [ ] }:
let
  base = self: {
    inherit lib config stdenv;
    stdenvNoCC = stdenv.noCC;
    callPackage = lib.callPackageWith self;
    newScope = extra: lib.callPackageWith (self // extra);
    fetchurl = import ./fetchurl.nix { inherit lib; inherit (stdenv.hostPlatform) system; };
    builders = import ./builders.nix { inherit lib; };
  };
  toolchain = import ./bootstrap-packages.nix { inherit lib; };
  setupHooks = import ./setup-hooks.nix { inherit lib; };
in
lib.fix (lib.foldl' (f: overlay: lib.extends overlay f) base ([ toolchain setupHooks ] ++ generated ++ overlays))
