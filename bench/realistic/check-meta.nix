# meta checks, as nixpkgs' check-meta.nix does them for every derivation: every meta attribute
# is type-checked against a schema, then license, platform, broken and vulnerability rules
# decide whether the package may be evaluated. An invalid package keeps its attribute set but
# its drvPath throws (so builtins.tryEval catches it, as in nixpkgs).
{ lib, config, hostPlatform }:
let
  inherit (lib) attrNames concatMapStringsSep filter isAttrs isList isString;
  isBool = builtins.isBool;
  listOf = pred: v: isList v && builtins.all pred v;
  metaTypes = {
    description = isString;
    longDescription = isString;
    homepage = v: isString v || listOf isString v;
    changelog = isString;
    license = v: isAttrs v || listOf isAttrs v;
    maintainers = listOf isAttrs;
    teams = listOf isAttrs;
    platforms = listOf isString;
    badPlatforms = listOf isString;
    broken = isBool;
    mainProgram = isString;
    position = isString;
    priority = builtins.isInt;
    knownVulnerabilities = listOf isString;
    outputsToInstall = listOf isString;
    available = isBool;
    unfree = isBool;
  };
  typeErrors = meta:
    filter (n: !(metaTypes ? ${n}) || !(metaTypes.${n} meta.${n})) (attrNames meta);
  licensesOf = meta: let l = meta.license or [ ]; in if isList l then l else [ l ];
  isUnfree = meta: builtins.any (l: !(l.free or true)) (licensesOf meta);
  platformMatch = p: p == hostPlatform.system;
  supported = meta:
    (!(meta ? platforms) || builtins.any platformMatch meta.platforms)
    && !(builtins.any platformMatch (meta.badPlatforms or [ ]));
  reasonOf = attrs: meta:
    let errs = typeErrors meta; in
    if errs != [ ] then { reason = "invalid-meta"; msg = "has invalid meta attributes: ${concatMapStringsSep ", " (x: x) errs}"; }
    else if !config.allowUnfree && isUnfree meta then { reason = "unfree"; msg = "has an unfree license (‘${concatMapStringsSep ", " (l: l.shortName or "unknown") (licensesOf meta)}’)"; }
    else if !config.allowBroken && (meta.broken or false) then { reason = "broken"; msg = "is marked as broken"; }
    else if !config.allowUnsupportedSystem && !supported meta then { reason = "unsupported"; msg = "is not available on the requested hostPlatform:\n    hostPlatform.config = \"${hostPlatform.config}\"\n    package.meta.platforms = [ ${concatMapStringsSep " " (p: "\"${p}\"") (meta.platforms or [ ])} ]"; }
    else if !config.allowInsecure && (meta.knownVulnerabilities or [ ]) != [ ] then { reason = "insecure"; msg = "is marked as insecure, refusing to evaluate.\n\nKnown issues:\n${concatMapStringsSep "\n" (v: " - ${v}") meta.knownVulnerabilities}"; }
    else null;
in
{
  # { valid, handled, meta } for a package: `handled` throws when the package is refused
  assertValidity = { meta, attrs, pos ? "an unknown file" }:
    let
      r = reasonOf attrs meta;
      name = attrs.name or "${attrs.pname}-${attrs.version}";
    in
    {
      valid = if r == null then "yes" else "no";
      handled = r == null || throw "Package ‘${name}’ in ${pos} ${r.msg}, refusing to evaluate.";
      meta = meta // {
        available = r == null;
        unfree = isUnfree meta;
        position = pos;
        outputsToInstall = meta.outputsToInstall or [ "out" ];
      };
    };
}
