# evix as a flake: the package (Python + nixffi's cffi extension over the C API of the
# nixpkgs `nix` it is given), an overlay, NixOS and home-manager modules (evixd as a
# socket-activated systemd user service; `evix worker` as a system service), a development
# shell and checks that run the test suite.
#
# Written and checked on Debian machines without nixpkgs (see README "What was verified"):
# these files parse, and the modules evaluate, with the bootstrapped Nix; building needs a
# Nix machine. Attribute names follow nixpkgs as of 2025.
{
  description = "evix: Nix evaluation engine that streams every derivation as NDJSON";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      evixFor = pkgs: pkgs.callPackage ./nix/package.nix { };

      # The modules, with services.evix.package defaulting to this flake's package.
      withPackage = module: { pkgs, ... }: {
        imports = [ module ];
        services.evix.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.evix;
      };
    in
    {
      overlays.default = final: _prev: { evix = evixFor final; };

      packages = forAllSystems (pkgs: rec {
        evix = evixFor pkgs;
        default = evix;
      });

      nixosModules.default = withPackage ./nix/module.nix;
      homeManagerModules.default = withPackage ./nix/home-manager.nix;

      devShells = forAllSystems (pkgs:
        let evix = evixFor pkgs; in {
          default = pkgs.mkShell {
            # the C API's dev outputs in inputsFrom, so pkg-config's hook finds nix-expr-c
            inputsFrom = [ evix ];
            packages = [
              (pkgs.python3.withPackages (ps: evix.passthru.pythonDeps ps ++ [ ps.pytest ps.pytest-trio ps.setuptools ]))
              pkgs.pkg-config
              evix.passthru.nix # nix-instantiate: the reference the tests compare against
            ];
            shellHook = ''
              echo "evix dev shell: scripts/dev test (or python nixffi/_build.py && python -m pytest)"
            '';
          };
        });

      # The test suite against the same Nix, in the build sandbox: a chroot store under
      # $TMPDIR (same store dir, so the same drvPaths as nix-instantiate), no daemon, no network.
      # Left out: the tests of the Debian bootstrap, of pip (network) and of scripts/dev.
      checks = forAllSystems (pkgs:
        let
          evix = evixFor pkgs;
          python = pkgs.python3.withPackages (ps: evix.passthru.pythonDeps ps ++ [ ps.pytest ps.pytest-trio ps.setuptools ]);
        in
        {
          package = evix;
          tests = pkgs.runCommand "evix-tests" {
            src = lib.cleanSource ./.;
            nativeBuildInputs = [ python pkgs.pkg-config evix.passthru.nix pkgs.git pkgs.bash ];
            buildInputs = evix.buildInputs;
          } ''
            cp -r "$src" evix && chmod -R u+w evix && cd evix
            export HOME=$TMPDIR NIX_REMOTE="local?root=$TMPDIR/chroot" NIX_STATE_DIR=$TMPDIR/chroot/nix/var/nix
            export NIX_CONFIG="build-users-group =
            experimental-features = nix-command flakes
            sandbox = false
            substituters ="
            python nixffi/_build.py
            python -m pytest -q -p no:cacheprovider \
              --ignore=tests/test_bootstrap.py --ignore=tests/test_first_run.py \
              --ignore=tests/test_packaging.py --ignore=tests/test_fresh_debian.py
            touch $out
          '';
        });
    };
}
