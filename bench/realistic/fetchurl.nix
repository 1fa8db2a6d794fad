# fetchurl: a fixed-output derivation per source tarball (as nixpkgs' fetchurl, without the
# mirror machinery). The hash is derived from the URL, so every source has a valid one.
{ lib, system }:
args:
let
  url = args.url;
  urls = map (m: lib.replaceStrings [ "mirror://gnu/" ] [ m ] url) [ "https://ftpmirror.gnu.org/" "https://ftp.gnu.org/gnu/" ];
in
derivation {
  name = args.name or (baseNameOf url);
  inherit system url;
  urls = if lib.hasPrefix "mirror://" url then urls else [ url ];
  builder = "builtin:fetchurl";
  outputHashMode = "flat";
  outputHashAlgo = "sha256";
  outputHash = args.sha256 or (builtins.hashString "sha256" url);
  preferLocalBuild = true;
  unpack = false;
  executable = false;
}
