# The setup hooks every stdenv carries (as nixpkgs' stdenv/generic/*.sh and makeSetupHook):
# each is a derivation whose script is assembled at evaluation time, line by line, from a
# template with @placeholders@ substituted by the tools of the stage (an overlay entry
# `setupHooks`, rebuilt in every bootstrap stage).
{ lib }:
self: super:
let
  inherit (lib) concatMapStringsSep concatStringsSep filter genList hasPrefix imap0 replaceStrings
    splitString stringLength;
  linesPerHook = 600;
  hookNames = [ "audit-tmpdir" "compress-man-pages" "make-symlinks-relative" "move-docs" "move-lib64"
    "move-sbin" "move-systemd-user-units" "multiple-outputs" "patch-shebangs" "prune-libtool-files"
    "reproducible-builds" "set-source-date-epoch-to-latest" "strip" "update-autotools-gnu-config-scripts" ];
  # the template: shell lines referring to tools by @placeholder@, comments to be dropped
  template = name: concatStringsSep "\n" (genList (i:
    if i / 7 * 7 == i then "# ${name}: step ${toString i}"
    else "  for f in \"$prefix\"/@dir${toString (i - i / 3 * 3)}@/*; do @tool${toString (i - i / 5 * 5)}@ --${name}-${toString i} \"$f\" || echo \"${name} failed on $f\" >&2; done")
    linesPerHook);
  tools = [ self.coreutils self.findutils self.gnused self.gnugrep self.patchelf ];
  substitutions = {
    dir0 = "bin"; dir1 = "lib"; dir2 = "share/man"; gnuconfig = self.gnu-config;
  } // builtins.listToAttrs (imap0 (i: t: { name = "tool${toString i}"; value = "${t}/bin/${t.pname or "tool"}"; }) tools);
  substitute = text:
    let names = builtins.attrNames substitutions; in
    replaceStrings (map (n: "@${n}@") names) (map (n: toString substitutions.${n}) names) text;
  # drop comments and blank lines, indent the rest, as the hooks' build step would
  clean = text: concatMapStringsSep "\n" (l: "    " + l)
    (filter (l: l != "" && !(hasPrefix "#" l)) (splitString "\n" text));
  makeSetupHook = name: self.stdenvNoCC.mkDerivation {
    pname = "${name}-hook";
    version = "0";
    dontUnpack = true;
    script = ''
      ${replaceStrings [ "-" ] [ "_" ] name}Hook() {
      ${clean (substitute (template name))}
      }
      postFixupHooks+=(${replaceStrings [ "-" ] [ "_" ] name}Hook)
    '';
    installPhase = "mkdir -p $out/nix-support; printf %s \"$script\" > $out/nix-support/setup-hook";
    passthru.lines = linesPerHook;
    meta = { description = "setup hook ${name} (${toString (stringLength (template name))} bytes of template)";
      platforms = lib.platforms.all; };
  };
in
{
  setupHooks = map makeSetupHook hookNames;
}
