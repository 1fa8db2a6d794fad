# evix as a nixpkgs package: the Python packages plus nixffi's cffi extension, compiled
# against the C API of the `nix` it is given (headers and pkg-config files nix-expr-c,
# nix-store-c, ... from the C library components' dev outputs), with evix, evixd and
# evix-eval-jobs in bin/. Nothing is bootstrapped at run time.
{ lib, python3, pkg-config, nix, boehmgc }:

let
  # nixpkgs' modular Nix (2.26 and later) lists its libraries in passthru.libs; the C API
  # is nix-*-c, and nix-store's C++ headers give nixffi its read-only mode.
  capi =
    if nix ? libs then
      with nix.libs; [ nix-util-c nix-store-c nix-expr-c nix-flake-c nix-main-c nix-store ]
    else
      [ nix ];
  py = python3.pkgs;
  # As pyproject.toml; pyinotify needs `asyncore`, which Python 3.12 dropped (pyasyncore).
  pythonDeps = ps: with ps; [ trio cffi pycapnp orjson pyinotify psutil ]
    ++ lib.optional (ps ? pyasyncore) ps.pyasyncore;
in
py.buildPythonApplication {
  pname = "evix";
  version = "0.1.0";
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml ../setup.py ../README.md
      ../nixffi ../evix_worker ../protocol ../evixd ../evix_client
    ];
  };

  build-system = [ py.setuptools py.cffi ];
  # setup.py runs nixffi/_build.py, which asks pkg-config for the C API and compiles it in.
  nativeBuildInputs = [ pkg-config ];
  buildInputs = map lib.getDev capi ++ capi ++ [ boehmgc ];

  dependencies = pythonDeps py;

  # The suite needs a writable store and nix-instantiate: it runs in the flake's checks.
  doCheck = false;
  pythonImportsCheck = [ "nixffi" "evixd.daemon" "evix_client.main" ];

  passthru = { inherit nix pythonDeps; }; # for the flake's dev shell and checks

  meta = {
    description = "Nix evaluation engine that streams every derivation as NDJSON, through the Nix C API";
    license = lib.licenses.eupl12;
    mainProgram = "evix";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
}
