# The generic stdenv (as nixpkgs' stdenv/generic): one derivation whose setup script is
# assembled from its tools, the phases' hooks and the dependency roles, with `mkDerivation`
# bound to it. The bootstrap builds one of these per stage.
{ lib, makeDerivation }:
let
  makeStdenv = { name, hostPlatform, buildPlatform ? hostPlatform, config, shell, initialPath, cc ? null
  , extraNativeBuildInputs ? [ ], preHook ? "", extraAttrs ? { } }@args:
  let
    inherit (lib) concatMap concatMapStrings concatMapStringsSep concatStringsSep imap0 optionalString
      substring toUpper;
    phases = [ "unpack" "patch" "configure" "build" "check" "install" "fixup" "installCheck" "dist" ];
    capitalise = s: toUpper (substring 0 1 s) + substring 1 (-1) s;
    hookNames = concatMap (p: [ "pre${capitalise p}" "post${capitalise p}" ]) phases;
    roles = [ { name = "Build"; offset = -1; } { name = "Host"; offset = 0; } { name = "Target"; offset = 1; } ];
    phaseFunctions = concatMapStrings (p: ''
      ${p}Phase() {
        runHook pre${capitalise p}
        if [ -n "''${${p}Flags:-}" ]; then echo "${p} flags: ''${${p}Flags}"; fi
        runHook post${capitalise p}
      }
    '') phases;
    hookRunners = concatMapStrings (h: ''
      ${h}Hooks=()
      add${capitalise h}Hook() { ${h}Hooks+=("$1"); }
    '') hookNames;
    # what setup.sh does in bash for every tool and role, spelled out at evaluation time
    searchPaths = concatMapStrings (pkg:
      concatMapStrings (role: ''
        addToSearchPathWithCustomDelimiter : PATH_${toUpper role.name} ${pkg}/bin # offset ${toString role.offset}
        addToSearchPath PKG_CONFIG_PATH_FOR_${toUpper role.name} ${pkg}/lib/pkgconfig
      '') roles) initialPath;
    envHooks = concatStringsSep "\n" (imap0 (i: pkg:
      "envHostTargetHooks[${toString i}]=${lib.escapeShellArg "${pkg}/nix-support/setup-hook"}") initialPath);
    setup = ''
      # stdenv ${name} for ${hostPlatform.config}
      export SHELL=${shell}
      initialPath="${concatMapStringsSep " " toString initialPath}"
      ${optionalString (cc != null) "export NIX_CC=${cc}"}
      ${preHook}
      ${hookRunners}
      ${phaseFunctions}
      ${searchPaths}
      ${envHooks}
      defaultNativeBuildInputs="${concatMapStringsSep " " toString extraNativeBuildInputs}"
    '';
    stdenv = derivation ({
      inherit name shell setup;
      inherit (hostPlatform) system;
      builder = shell;
      args = [ "-e" "-c" "mkdir -p $out; printf %s \"$setup\" > $out/setup" ];
      initialPath = map toString initialPath;
      defaultNativeBuildInputs = extraNativeBuildInputs ++ lib.optional (cc != null) cc;
      preferLocalBuild = true;
      allowSubstitutes = false;
    } // lib.optionalAttrs (cc != null) { inherit cc; }) // extraAttrs // {
      inherit hostPlatform buildPlatform config cc initialPath;
      defaultNativeBuildInputs = extraNativeBuildInputs ++ lib.optional (cc != null) cc;
      inherit (hostPlatform) isLinux isDarwin isx86_64 isi686 isAarch64 isStatic;
      mkDerivation = makeDerivation stdenv;
      shellPackage = shell;
      # the same stdenv without a compiler (stdenvNoCC)
      noCC = if cc == null then stdenv else makeStdenv (args // { cc = null; name = "${name}-nocc"; });
    };
  in
  stdenv;
in
makeStdenv
