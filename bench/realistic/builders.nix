# The scopes' builders, after nixpkgs' buildPythonPackage, haskellPackages.mkDerivation,
# buildPerlPackage and qt6's mkDerivation: each adds its interpreter or compiler, hooks and
# naming to stdenv.mkDerivation. `pkgs` is the top level, `attrs` what the package gives.
{ lib }:
let
  inherit (lib) concatMapStringsSep optionals replaceStrings toLower;
in
{
  python = pkgs: attrs: pkgs.stdenv.mkDerivation (finalAttrs: removeAttrs attrs [ "dependencies" "build-system" ] // {
    pname = "python3.12-${attrs.pname}";
    nativeBuildInputs = [ pkgs.python3 ] ++ attrs.build-system or [ ] ++ attrs.nativeBuildInputs or [ ];
    propagatedBuildInputs = attrs.dependencies or [ ] ++ [ pkgs.python3 ];
    pythonImportsCheck = attrs.pythonImportsCheck or [ (replaceStrings [ "-" ] [ "_" ] attrs.pname) ];
    dontUsePipInstall = !(attrs.pyproject or true);
    installCheckPhase = "runHook preInstallCheck; python -c 'import ${replaceStrings [ "-" ] [ "_" ] attrs.pname}'";
    passthru = attrs.passthru or { } // { pythonModule = pkgs.python3; pythonPath = attrs.dependencies or [ ]; };
    meta = { platforms = lib.platforms.unix; } // attrs.meta or { };
  });

  haskell = pkgs: attrs:
    let
      deps = attrs.libraryHaskellDepends or [ ];
      flags = map (f: "-f${f}") (attrs.cabalFlags or [ ]) ++ [ "--enable-shared" "--ghc-option=-j" ];
    in
    pkgs.stdenv.mkDerivation (removeAttrs attrs [ "libraryHaskellDepends" "cabalFlags" ] // {
      pname = "haskell-${attrs.pname}";
      nativeBuildInputs = [ pkgs.ghc ] ++ attrs.nativeBuildInputs or [ ];
      propagatedBuildInputs = deps;
      configureFlags = flags ++ map (d: "--package-db=${d}/lib/ghc-9.6/package.conf.d") deps;
      setupCompileFlags = concatMapStringsSep " " (d: "-package-db=${d}/package.conf.d") deps;
      meta = { platforms = pkgs.ghc.meta.platforms; } // attrs.meta or { };
    });

  perl = pkgs: attrs: pkgs.stdenv.mkDerivation (attrs // {
    pname = "perl5.38-${attrs.pname}";
    nativeBuildInputs = [ pkgs.perl ] ++ attrs.nativeBuildInputs or [ ];
    PERL5LIB = concatMapStringsSep ":" (d: "${d}/lib/perl5/site_perl") (attrs.propagatedBuildInputs or [ ]);
    configurePhase = "perl Makefile.PL PREFIX=$out INSTALLDIRS=site";
  });

  qt = pkgs: attrs: pkgs.stdenv.mkDerivation (attrs // {
    nativeBuildInputs = [ pkgs.cmake pkgs.ninja ] ++ attrs.nativeBuildInputs or [ ];
    buildInputs = [ pkgs.qtbase ] ++ attrs.buildInputs or [ ];
    cmakeFlags = [ "-DQT_MAJOR_VERSION=6" "-DBUILD_TESTING=${if attrs.doCheck or true then "ON" else "OFF"}" ]
      ++ optionals pkgs.stdenv.hostPlatform.isStatic [ "-DQT_STATIC=ON" ] ++ attrs.cmakeFlags or [ ];
    qtPluginPrefix = "lib/qt-6/plugins";
    qtQmlPrefix = "lib/qt-6/qml";
    env = attrs.env or { } // { QT_HASH_SEED = toLower "0"; };
  });
}
