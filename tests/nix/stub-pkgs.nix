# A stand-in package set with just what nix/package.nix, the modules and flake.nix call;
# a "package" is a set with an outPath, so it interpolates into unit files like a real one.
{ lib ? import ./stub-lib.nix, system ? "x86_64-linux" }:

let
  drv = name: extra: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; } // extra;
  withDev = name: drv name { dev = drv "${name}-dev" { }; };
  pyPkgs = lib.genAttrs [ "setuptools" "cffi" "trio" "pycapnp" "orjson" "pyinotify" "psutil" "pyasyncore"
    "pytest" "pytest-trio" ] (n: drv "python3.12-${n}" { });
  pkgs = {
    inherit lib;
    stdenv.hostPlatform.system = system;
    callPackage = fn: overrides:
      let f = if builtins.isFunction fn then fn else import fn; in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
    python3 = drv "python3-3.12" {
      pkgs = pyPkgs // {
        buildPythonApplication = attrs: drv "${attrs.pname}-${attrs.version}" (removeAttrs attrs [ "passthru" ])
          // attrs.passthru or { } // { passthru = attrs.passthru or { }; };
      };
      withPackages = f: drv "python3-with-packages" { packages = f pyPkgs; };
    };
    pkg-config = drv "pkg-config" { };
    boehmgc = withDev "boehm-gc";
    nix = withDev "nix-2.28.3" // {
      libs = lib.genAttrs [ "nix-util-c" "nix-store-c" "nix-expr-c" "nix-flake-c" "nix-main-c" "nix-store" ] withDev;
    };
    git = drv "git" { };
    bash = drv "bash" { };
    mkShell = attrs: drv "nix-shell" attrs;
    runCommand = name: env: script: drv name (env // { inherit script; });
    writeShellScript = name: text: drv name { inherit text; };
  };
in
pkgs
