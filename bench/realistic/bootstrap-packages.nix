# The toolchain packages that the stdenv bootstrap rebuilds stage after stage (an overlay of
# the package set): compilers, binutils, libc, the core utilities of stdenv's initialPath,
# and the compiler and binutils wrappers, whose many flags are computed at evaluation time.
{ lib }:
self: super:
let
  inherit (lib) concatMapStrings optionals optionalString stringLength toUpper;
  # a GNU package: tarball from ftp.gnu.org, an autoconf build whose configure flags come from a
  # long feature list (as gcc's and glibc's expressions compute theirs), the usual meta
  features = [ "nls" "shared" "static" "threads" "lto" "plugin" "multilib" "bootstrap" "werror" "docs"
    "largefile" "rpath" "libtool-lock" "dependency-tracking" "silent-rules" "maintainer-mode" "assert"
    "checking" "debug" "profile" "coverage" "sanitizers" "libssp" "libquadmath" "libgomp" "libatomic"
    "libitm" "libsanitizer" "libvtv" "cet" "default-pie" "default-ssp" "gnu-unique-object" "linker-build-id"
    "gnu-indirect-function" "initfini-array" "tls" "__cxa_atexit" "clocale" "c99" "long-long" "wchar_t"
    "fixincludes" "libstdcxx" "libstdcxx-pch" "libstdcxx-debug" "libstdcxx-time" "libstdcxx-filesystem-ts"
    "decimal-float" "fixed-point" "float128" "host-shared" "host-pie" "canonical-system-headers" "gold" "ld"
    "compressed-debug-sections" "separate-code" "relro" "new-dtags" "targets" "64-bit-bfd" "install-libbfd"
    "install-libiberty" "nss-crypt" "stack-protector" "bind-now" "kernel" "memory-tagging" "crypt" "mathvec"
    "static-pie" "timezone-tools" "experimental-malloc" "tunables" "pt_chown" "obsolete-rpc" "systemtap"
    "build-nscd" "nscd" "hardcoded-path-in-tests" "iconv" "unicode" "readline" "curses" "pcre" "selinux"
    "xattr" "acl" "libcap" "gmp" "openssl" "single-binary" "year2038" "manpages" ];
  gnuFlags = pname: enabled:
    map (f: lib.enableFeature (lib.elem f enabled) f) features
    ++ map (f: lib.withFeature (lib.elem f enabled) f) [ "system-zlib" "isl" "gmp" "mpfr" "mpc" "zstd" "libiconv" ]
    ++ [ "--program-prefix=" "--with-pkgversion=${pname}-realistic" "--with-bugurl=https://example.org/${pname}/issues" ];
  gnu = pname: version: extra: self.callPackage ({ stdenv, fetchurl }: stdenv.mkDerivation (finalAttrs: {
    inherit pname version;
    src = fetchurl { url = "mirror://gnu/${pname}/${pname}-${finalAttrs.version}.tar.xz"; };
    outputs = [ "out" "info" ];
    # distribution patches, fetched like fetchpatch does (one fixed-output derivation each)
    patches = map (n: self.fetchurl { url = "https://patches.example.org/${pname}/${version}/${toString n}-fix.patch"; })
      (lib.range 1 6);
    configureFlags = gnuFlags pname (lib.subtractLists [ "werror" "maintainer-mode" "coverage" ]
      (lib.filter (f: stringLength f > stringLength pname - 2) features));
    makeFlags = map (v: "${lib.toUpper v}=${lib.toLower v}") [ "prefix" "Bindir" "Libdir" "Datadir" "Mandir" ];
    postPatch = concatMapStrings (f: ''
      substituteInPlace configure --replace-quiet '${f}_default=no' '${f}_default=${if lib.elem f [ "tls" "c99" "shared" ] then "yes" else "no"}'
    '') features;
    enableParallelBuilding = true;
    meta = {
      description = "GNU ${pname}, part of the bootstrap toolchain";
      homepage = "https://www.gnu.org/software/${pname}/";
      license = lib.licenses.gpl3Plus;
      maintainers = [ lib.maintainers.m0 lib.maintainers.m1 ];
      platforms = lib.platforms.unix;
    };
  } // extra finalAttrs)) { };
  tools = { coreutils = "9.4"; findutils = "4.9.0"; diffutils = "3.10"; gnused = "4.9"; gnugrep = "3.11";
    gawk = "5.2.2"; gnutar = "1.35"; gzip = "1.13"; bzip2 = "1.0.8"; gnumake = "4.4.1"; bash = "5.2p26";
    patch = "2.7.6"; xz = "5.4.6"; };
  roles = [ "" "_FOR_BUILD" "_FOR_TARGET" ];
  # nixpkgs' cc-wrapper: flags files and environment variables for every role of the platform
  wrap = kind: { unwrapped, bintools ? null, libc, extraFlags ? [ ] }:
    let
      salt = self.stdenv.hostPlatform.suffixSalt;
      libcFlags = [ "-B${libc}/lib" "-idirafter ${lib.getDev libc}/include" "-L${libc}/lib" ] ++ extraFlags;
      # what cc-wrapper's add-flags.sh and setup-hook export, per role and variable
      vars = [ "cflags_compile" "cflags_link" "ldflags" "ldflags_before" "dynamic_linker" "hardening_enable"
        "libc_crt1" "libc_include" "libc_lib" "cc_wrapper_flags_set" "bintools_wrapper_flags_set" "debug"
        "dont_set_rpath" "enforce_purity" "enforce_no_native" "store" "bin_prefix" "gnat_flags" "cxxstdlib_compile"
        "cxxstdlib_link" "targetprefix" "wrapper_target_host" "pkg_config_wrapper" "lib_paths" "rpath_paths" ];
      flagFiles = concatMapStrings (role: ''
        echo ${lib.escapeShellArgs libcFlags} > $out/nix-support/${kind}${role}-cflags
        ${lib.concatMapStringsSep "\n" (v: "export NIX_${toUpper v}${role}_${salt}=${lib.escapeShellArg "${toString libc}/${v} ${toString unwrapped}"}") vars}
        substituteAll ${unwrapped}/bin/${kind} $out/bin/${kind}${role} --subst-var-by prog ${unwrapped}/bin/${kind}
      '') roles;
    in
    self.stdenvNoCC.mkDerivation {
      pname = "${unwrapped.pname or kind}-wrapper";
      version = unwrapped.version or "";
      dontUnpack = true;
      installPhase = ''
        mkdir -p $out/bin $out/nix-support
        ${flagFiles}
        ${optionalString (bintools != null) "echo ${bintools} > $out/nix-support/orig-bintools"}
      '';
      nativeBuildInputs = [ self.expand-response-params ];
      propagatedBuildInputs = optionals (bintools != null) [ bintools ];
      passthru = { inherit unwrapped libc bintools; isGNU = true; targetPrefix = ""; };
      meta = { description = "the ${kind} wrapper"; platforms = lib.platforms.linux; };
    };
in
{
  gmp = gnu "gmp" "6.3.0" (_: { buildInputs = [ self.m4 ]; });
  mpfr = gnu "mpfr" "4.2.1" (_: { buildInputs = [ self.gmp ]; });
  libmpc = gnu "mpc" "1.3.1" (_: { buildInputs = [ self.gmp self.mpfr ]; });
  isl = gnu "isl" "0.20" (_: { buildInputs = [ self.gmp ]; });
  m4 = gnu "m4" "1.4.19" (_: { });
  bison = gnu "bison" "3.8.2" (_: { nativeBuildInputs = [ self.m4 ]; });
  texinfo = gnu "texinfo" "7.1" (_: { buildInputs = [ self.perl ]; });
  perl = gnu "perl" "5.38.2" (_: { buildInputs = [ self.libxcrypt self.zlib ];
    configureFlags = [ "-de" "-Duseshrplib" "-Dlocincpth=${self.glibc}/include" ]; });
  attr = gnu "attr" "2.5.2" (_: { });
  acl = gnu "acl" "2.3.2" (_: { buildInputs = [ self.attr ]; });
  libxcrypt = gnu "libxcrypt" "4.4.36" (_: { });
  libunistring = gnu "libunistring" "1.2" (_: { });
  libidn2 = gnu "libidn2" "2.3.7" (_: { buildInputs = [ self.libunistring ]; });
  expand-response-params = gnu "expand-response-params" "0" (_: { });
  gnu-config = gnu "gnu-config" "2024-01-01" (_: { });
  zlib = gnu "zlib" "1.3.1" (_: { outputs = [ "out" "dev" ]; });
  patchelf = gnu "patchelf" "0.15.0" (_: { });
  linuxHeaders = gnu "linux-headers" "6.6" (_: { buildInputs = [ self.perl ]; });
  glibc = gnu "glibc" "2.39" (_: { outputs = [ "out" "dev" "bin" ]; buildInputs = [ self.linuxHeaders self.libidn2 ];
    hardeningDisable = [ "fortify" "stackprotector" "pic" ]; });
  binutils-unwrapped = gnu "binutils" "2.42" (_: { buildInputs = [ self.zlib ]; nativeBuildInputs = [ self.bison self.texinfo ]; });
  gcc-unwrapped = gnu "gcc" "13.2.0" (final: {
    buildInputs = [ self.gmp self.mpfr self.libmpc self.isl self.zlib ];
    configureFlags = [ "--enable-languages=c,c++" "--with-gmp=${self.gmp}" "--with-mpfr=${self.mpfr}"
      "--with-mpc=${self.libmpc}" "--with-isl=${self.isl}" "--with-native-system-header-dir=${lib.getDev self.glibc}/include" ];
  });
  binutils = wrap "ld" { unwrapped = self.binutils-unwrapped; libc = self.glibc; };
  gcc = wrap "cc" { unwrapped = self.gcc-unwrapped; bintools = self.binutils; libc = self.glibc;
    extraFlags = [ "-march=${self.stdenv.hostPlatform.gcc.arch}" "-mtune=${self.stdenv.hostPlatform.gcc.tune}" ]; };
} // lib.mapAttrs (n: version: gnu n version (_: {
  buildInputs = optionals (n != "bash") [ self.bash ] ++ optionals (n == "coreutils") [ self.acl self.attr self.gmp ];
})) tools
