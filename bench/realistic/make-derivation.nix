# stdenv.mkDerivation, shaped like nixpkgs' make-derivation.nix: attributes or a function of
# the final attributes (so `overrideAttrs` can change what others read), dependency
# categories normalised to dev outputs, configure/cmake/meson flags for the platform,
# hardening flags, meta checked for every package, then one `derivation` call with some
# forty environment attributes, extended with passthru and the validity condition.
{ lib, checkMeta }:
stdenv:
let
  inherit (lib) attrNames concatMapStringsSep concatStringsSep elem filter getDev isFunction optional
    optionals optionalString subtractLists unique;
  inherit (stdenv) hostPlatform buildPlatform;
  checker = checkMeta { inherit lib; inherit (stdenv) config; inherit hostPlatform; };

  depCategories = [
    "depsBuildBuild" "nativeBuildInputs" "depsBuildTarget" "depsHostHost" "buildInputs" "depsTargetTarget"
    "depsBuildBuildPropagated" "propagatedNativeBuildInputs" "depsBuildTargetPropagated"
    "depsHostHostPropagated" "propagatedBuildInputs" "depsTargetTargetPropagated"
  ];
  defaultHardening = [ "bindnow" "format" "fortify" "fortify3" "pic" "relro" "stackclashprotection"
    "stackprotector" "strictoverflow" "zerocallusedregs" ];
  notInEnv = [ "meta" "passthru" "env" "pos" "checkInputs" "nativeCheckInputs" "hardeningEnable"
    "hardeningDisable" "separateDebugInfo" "finalPackage" ];

  platformFlags = attrs:
    [ "--build=${buildPlatform.config}" "--host=${hostPlatform.config}" ]
    ++ optionals hostPlatform.isStatic [ "--enable-static" "--disable-shared" ]
    ++ optional (attrs.dontAddPrefix or false) "--prefix=${placeholder "out"}";
  cmakePlatformFlags = [
    "-DCMAKE_SYSTEM_NAME=${hostPlatform.uname.system}"
    "-DCMAKE_SYSTEM_PROCESSOR=${hostPlatform.uname.processor}"
    "-DCMAKE_BUILD_TYPE=Release"
    (lib.cmakeBool "BUILD_SHARED_LIBS" (!hostPlatform.isStatic))
  ];

  # Each dependency category: nulls dropped, dev outputs preferred, check inputs when checking.
  dependencies = attrs:
    let
      doCheck = attrs.doCheck or true;
      extra = { nativeBuildInputs = stdenv.defaultNativeBuildInputs ++ optionals doCheck (attrs.nativeCheckInputs or [ ]);
        buildInputs = optionals doCheck (attrs.checkInputs or [ ]); };
    in
    lib.genAttrs depCategories (c: map getDev (filter (d: d != null) (attrs.${c} or [ ] ++ extra.${c} or [ ])));

  # the transitive closure of a package's inputs, walked here at evaluation time (setup.sh
  # walks it at build time) for the linker flags and the wrapper lines below
  closureOf = deps: map (x: x.pkg) (builtins.genericClosure {
    startSet = map (d: { key = toString d; pkg = d; }) deps;
    operator = x: map (d: { key = toString d; pkg = d; }) (x.pkg.propagatedBuildInputs or [ ] ++ x.pkg.buildInputs or [ ]);
  });

  makeDerivationArgs = attrs:
    let
      name = attrs.name or "${attrs.pname}-${attrs.version}${optionalString hostPlatform.isStatic "-static"}";
      outputs = attrs.outputs or [ "out" ];
      hardening = subtractLists (attrs.hardeningDisable or [ ]) (unique (defaultHardening ++ attrs.hardeningEnable or [ ]));
      deps = dependencies attrs;
      env = attrs.env or { };
      envNames = attrNames env;
      separateDebugInfo = attrs.separateDebugInfo or false && hostPlatform.isLinux;
      closure = closureOf (deps.buildInputs ++ deps.propagatedBuildInputs);
    in
    removeAttrs attrs notInEnv // deps // env // {
      inherit name;
      builder = stdenv.shell;
      args = [ "-e" (attrs.builder or "${stdenv}/default-builder.sh") ];
      outputs = outputs ++ optional separateDebugInfo "debug";
      inherit (hostPlatform) system;
      inherit stdenv;
      configureFlags = platformFlags attrs ++ attrs.configureFlags or [ ];
      cmakeFlags = optionals (elem "cmake" (map (d: d.pname or "") deps.nativeBuildInputs)) cmakePlatformFlags ++ attrs.cmakeFlags or [ ];
      mesonFlags = [ "--buildtype=plain" "--wrap-mode=nodownload" (lib.mesonBool "b_lto" false) ] ++ attrs.mesonFlags or [ ];
      NIX_HARDENING_ENABLE = concatStringsSep " " hardening;
      strictDeps = attrs.strictDeps or (hostPlatform != buildPlatform);
      doCheck = attrs.doCheck or true;
      doInstallCheck = attrs.doInstallCheck or false;
      enableParallelBuilding = attrs.enableParallelBuilding or true;
      enableParallelChecking = attrs.enableParallelChecking or true;
      patches = attrs.patches or [ ];
      outputDev = attrs.outputDev or (if elem "dev" outputs then "dev" else "out");
      outputBin = attrs.outputBin or (if elem "bin" outputs then "bin" else "out");
      outputLib = attrs.outputLib or (if elem "lib" outputs then "lib" else "out");
      NIX_CFLAGS_COMPILE = concatStringsSep " " (attrs.NIX_CFLAGS_COMPILE or [ ] ++ optional hostPlatform.isStatic "-static"
        ++ map (d: "-isystem ${d}/include") closure);
      NIX_LDFLAGS = concatMapStringsSep " " (d: "-L${d}/lib -rpath ${d}/lib") closure;
      postFixup = attrs.postFixup or "" + lib.concatMapStrings (o: lib.concatMapStrings (d: ''
        wrapProgram ${placeholder o}/bin/* --prefix PATH : ${d}/bin --prefix XDG_DATA_DIRS : ${d}/share
      '') closure) outputs;
      __ignoreNulls = true;
      __envNames = concatMapStringsSep " " lib.escapeShellArg envNames;
    };

  makeDerivation = attrs:
    let
      validity = checker.assertValidity { meta = attrs.meta or { }; inherit attrs; pos = attrs.pos or "pkgs/by-name/${attrs.pname or "unknown"}/package.nix"; };
      drv = derivation (makeDerivationArgs attrs);
      passthru = attrs.passthru or { };
    in
    lib.extendDerivation validity.handled (passthru // { inherit passthru; inherit (validity) meta; pname = attrs.pname or null; version = attrs.version or null; }) drv;

  # rattrs: final attributes -> attributes; overrideAttrs composes another layer on top.
  extensible = rattrs:
    let
      finalAttrs = rattrs finalAttrs;
      overrideAttrs = f0:
        let f = final: prev: let x = f0 prev; in if isFunction x then f0 final prev else x; in
        extensible (final: let prev = rattrs final; in prev // f final prev);
    in
    makeDerivation finalAttrs // { inherit overrideAttrs; };
in
fpArgs: extensible (if isFunction fpArgs then fpArgs else _: fpArgs)
