# evix as a flake: the package (Python + nixffi's cffi extension over the Nix C API) and a
# development shell. Written without a nixpkgs at hand (our Debian machines build Nix from
# source, see scripts/bootstrap-nix), so only parsing is checked here; attribute names
# follow nixpkgs as of 2025.
{
  description = "evix: Nix evaluation engine that streams every derivation as NDJSON";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};
      lib = nixpkgs.lib;
      python3 = pkgs.python3;

      # The Nix whose C API nixffi links against: 2.26 is what we test with; newer ones
      # work too (nixffi only binds the functions the headers declare). The C API's headers
      # and pkg-config files (nix-expr-c, nix-flake-c, ...) are in the `dev` output.
      nix = pkgs.nixVersions.nix_2_26 or pkgs.nix;

      # Runtime dependencies, as in pyproject.toml. pyinotify needs `asyncore`, which
      # Python 3.12 dropped: pyasyncore provides it where nixpkgs has it.
      pythonDeps = ps: with ps; [ trio cffi pycapnp orjson jsonrpcserver pyinotify psutil ]
        ++ lib.optional (ps ? pyasyncore) ps.pyasyncore;

      evix = python3.pkgs.buildPythonApplication {
        pname = "evix";
        version = "0.1.0";
        pyproject = true;
        src = lib.cleanSource ./.;

        build-system = with python3.pkgs; [ setuptools cffi ];
        # setup.py runs nixffi/_build.py, which asks pkg-config for the C API.
        nativeBuildInputs = [ pkgs.pkg-config ];
        buildInputs = [ (lib.getDev nix) nix ];
        dependencies = pythonDeps python3.pkgs;

        # The test suite needs a writable Nix store and the `nix` CLI: not in the sandbox.
        doCheck = false;
        pythonImportsCheck = [ "nixffi" ];

        meta = {
          description = "Nix evaluation engine through the Nix C API";
          license = lib.licenses.eupl12;
          mainProgram = "evix";
          platforms = lib.platforms.linux;
        };
      };
    in
    {
      packages.${system} = {
        inherit evix;
        default = evix;
      };

      devShells.${system}.default = pkgs.mkShell {
        # nix in buildInputs so pkg-config's setup hook puts its .pc files on PKG_CONFIG_PATH.
        buildInputs = [ (lib.getDev nix) nix ];
        packages = [
          (python3.withPackages (ps: pythonDeps ps ++ [ ps.pytest ps.pytest-trio ps.setuptools ]))
          pkgs.pkg-config
          nix # nix-instantiate / nix eval: the reference the tests compare against
        ];
        shellHook = ''
          echo "evix dev shell: build nixffi with 'python nixffi/_build.py', test with 'python -m pytest'"
        '';
      };
    };
}
