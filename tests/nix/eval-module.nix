# Evaluates NixOS-style modules the way the module system does, for the parts our modules
# use: imports, options with defaults, definitions of option paths by modules (mkDefault)
# and by the caller (`settings`), and mkIf / mkMerge / mkDefault in config. Returns
# { options = the final option values; config = what the modules define (options excluded) }.
{ lib ? import ./stub-lib.nix }:
{ modules, settings ? { }, pkgs ? { } }:

let
  inherit (builtins) isAttrs isList isFunction attrNames concatMap foldl' hasAttr mapAttrs removeAttrs;

  isOption = v: isAttrs v && (v._type or null) == "option";

  # Resolves config markers: mkIf (dropped when false), mkMerge (merged), mkDefault (unwrapped).
  resolve = v:
    if isAttrs v then
      (if (v._type or null) == "if" then (if v.condition then resolve v.content else { })
      else if (v._type or null) == "merge" then foldl' merge { } (map resolve v.contents)
      else if (v._type or null) == "override" then resolve v.content
      else if lib.isDerivation v then v
      else mapAttrs (_: resolve) v)
    else v;

  # Definitions merged as the module system merges them: sets recursively, lists concatenated.
  merge = a: b:
    a // mapAttrs (name: vb:
      if hasAttr name a && isAttrs a.${name} && isAttrs vb && !(lib.isDerivation vb) then merge a.${name} vb
      else if hasAttr name a && isList a.${name} && isList vb then a.${name} ++ vb
      else vb) b;

  call = m: let f = if isFunction m then m else import m; in
    if isFunction f then f { inherit lib pkgs; config = optionValues; } else f; # modules read options only
  collect = m: let r = call m; in [ r ] ++ concatMap collect (r.imports or [ ]);
  results = concatMap collect modules;

  options = foldl' merge { } (map (r: r.options or { }) results);
  raw = map (r: if r ? options || r ? config then r.config or { } else removeAttrs r [ "imports" ]) results;
  defined = foldl' merge { } (map resolve raw);
  # What modules set options to: only from definitions that are not under a top-level mkIf or
  # mkMerge (whose conditions read the options: resolving them here would be a cycle). The
  # flake's `services.evix.package = mkDefault …` is such a plain definition.
  optionDefinitions = foldl' merge { } (map resolve (builtins.filter (d: !(d ? _type)) raw));

  # An option's value: the caller's setting, else a module's definition, else its default.
  values = opts: set: defs: path:
    mapAttrs (name: opt:
      let here = "${path}.${name}"; in
      if isOption opt then
        (if hasAttr name set then set.${name}
        else if hasAttr name defs then defs.${name}
        else opt.default or (throw "option ${here} is used but has no value"))
      else values opt (set.${name} or { }) (defs.${name} or { }) here)
    opts // checkUnknown opts set path;
  checkUnknown = opts: set: path:
    foldl' (acc: name: if hasAttr name opts then acc else throw "setting ${path}.${name}: no such option") { } (attrNames set);

  optionValues = values options settings optionDefinitions "";
in
{
  options = optionValues;
  config = defined;
}
