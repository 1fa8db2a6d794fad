# The stdenv bootstrap, shaped like nixpkgs' pkgs/stdenv/linux: stage 0 wraps the bootstrap
# tools; every later stage (stage1, xgcc, stage2, stage3, stage4) builds its stdenv from the
# previous stage's compiler, shell, core utilities and setup hooks, instantiates the whole
# package set with it, and rebuilds most of the toolchain (the names in `keep` it takes
# from the stage before). The final package set's stdenv is built
# from stage 4, so forcing any package's drvPath forces this whole chain first.
{ lib, makeStdenv, packageSet, config }:
localSystem:
let
  inherit (lib) genAttrs;
  system = localSystem.system;
  fetchBoot = name: executable: derivation {
    inherit name system executable;
    builder = "builtin:fetchurl";
    url = "http://tarballs.example.org/stdenv/${system}/${name}";
    outputHashMode = if executable then "recursive" else "flat";
    outputHashAlgo = "sha256";
    outputHash = builtins.hashString "sha256" "${system}/${name}";
    unpack = false;
  };
  bootstrapTools = derivation {
    name = "bootstrap-tools";
    inherit system;
    builder = fetchBoot "busybox" true;
    args = [ "ash" "-e" "-c" "unpack-bootstrap-tools" ];
    tarball = fetchBoot "bootstrap-tools.tar.xz" false;
    langC = true;
    langCC = true;
    isGNU = true;
  } // { pname = "bootstrap-tools"; version = "0"; };

  tools = [ "coreutils" "findutils" "diffutils" "gnused" "gnugrep" "gawk" "gnutar" "gzip" "bzip2"
    "gnumake" "bash" "patch" "xz" ];
  toolchain = [ "gmp" "mpfr" "libmpc" "isl" "m4" "bison" "texinfo" "perl" "zlib" "patchelf" "linuxHeaders"
    "glibc" "binutils-unwrapped" "gcc-unwrapped" "attr" "acl" "libxcrypt" "libunistring" "libidn2"
    "expand-response-params" "gnu-config" ];

  stdenvFrom = name: prev: makeStdenv {
    name = "${name}-stdenv-linux";
    hostPlatform = localSystem;
    inherit config;
    shell = "${prev.bash}/bin/bash";
    initialPath = map (t: prev.${t}) tools;
    cc = prev.gcc;
    extraNativeBuildInputs = [ prev.patchelf ] ++ prev.setupHooks;
    preHook = "export NIX_ENFORCE_PURITY=1 NIX_BOOTSTRAP_STAGE=${name}";
  };
  # one stage: its stdenv from `prev`, the package set on it, `keep` taken over from `prev`
  stage = name: keep: prev: packageSet {
    stdenv = stdenvFrom name prev;
    overlays = [ (self: super: genAttrs keep (n: prev.${n}) // { bootstrapStage = name; }) ];
  };

  stage0 = packageSet {
    stdenv = makeStdenv {
      name = "bootstrap-stage0-stdenv-linux";
      hostPlatform = localSystem;
      inherit config;
      shell = "${bootstrapTools}/bin/bash";
      initialPath = [ bootstrapTools ];
    };
    overlays = [ (self: super: genAttrs (tools ++ toolchain) (_: bootstrapTools) // { bootstrapStage = "stage0"; }) ];
  };
  stage1 = stage "bootstrap-stage1" [ "gcc-unwrapped" "glibc" "linuxHeaders" ] stage0;
  stageXgcc = stage "bootstrap-stage-xgcc" [ "glibc" "linuxHeaders" ] stage1;
  stage2 = stage "bootstrap-stage2" [ "linuxHeaders" ] stageXgcc;
  stage3 = stage "bootstrap-stage3" [ "glibc" "linuxHeaders" ] stage2;
  stage4 = stage "bootstrap-stage4" [ "glibc" "linuxHeaders" "gmp" "mpfr" "libmpc" "isl" ] stage3;
in
{
  stages = [ stage0 stage1 stageXgcc stage2 stage3 stage4 ];
  # the final stdenv, and the toolchain packages the final set takes from stage 4
  stdenv = stdenvFrom "final" stage4;
  fromLastStage = genAttrs (tools ++ toolchain ++ [ "binutils" "gcc" ]) (n: stage4.${n});
}
