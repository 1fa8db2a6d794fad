# The benchmark's reference: one Nix process forcing every drvPath that `evix eval` reports.
#
# Walks `root` with evix's traversal semantics: the root is always expanded; below it an
# attribute set is expanded only if `recurseForDerivations == true`; a value whose `type` is
# "derivation" contributes its drvPath; a function is first auto-called as evix does without
# --arg (`{ a ? 1 }:` with { }, a `__functor` set through its functor; `x: ...` and builtins
# stay uncalled, and one with a required formal is an error event in evix, nothing here);
# anything else is skipped. A broken item is skipped
# with `builtins.tryEval`, which catches `throw` and `assert` only, so items whose error
# tryEval cannot catch (e.g. a missing attribute) are listed in `skip` (attribute paths).
#
# With `autoCall` (the default, as evix and nix-eval-jobs do), a function whose arguments all
# have defaults is called and its result visited like the attribute itself; one with a
# required argument is skipped (that is an error event for evix).
#
#   result = "count": the number of drvPaths forced (what the benchmark times)
#   result = "paths": the sorted list of drvPaths (what the benchmark checks evix against)
{ root, skip ? [ ], result ? "count", autoCall ? true }:
let
  inherit (builtins) all attrNames attrValues concatMap concatStringsSep functionArgs isAttrs isFunction
    length listToAttrs sort tryEval;

  skipped = listToAttrs (map (path: { name = concatStringsSep "." path; value = true; }) skip);

  hasPattern = re: f: length (builtins.split re (builtins.toXML f)) > 1;
  # The value as evix's traversal sees it: functions auto-called (null: no value to report).
  called = v:
    if builtins.isFunction v then
      if hasPattern "<attrspat" v then
        (if builtins.all (d: d) (builtins.attrValues (builtins.functionArgs v)) then called (v { }) else null)
      else v
    else if isAttrs v && v ? __functor then called (v.__functor v)
    else v;

  # One attribute: [ drvPath ] for a derivation, the paths below it for a set to expand.
  visit = path: v0:
    if skipped ? ${concatStringsSep "." path} then [ ]
    else
      let c = tryEval (if autoCall then called v0 else v0); v = c.value; isSet = tryEval (c.success && isAttrs v); in
      if !(isSet.success && isSet.value) then [ ]
      else
        let isDrv = tryEval ((v.type or null) == "derivation"); in
        if !isDrv.success then [ ]
        else if isDrv.value then
          let p = tryEval v.drvPath; in if p.success then [ p.value ] else [ ]
        else
          let r = tryEval ((v.recurseForDerivations or false) == true); in
          if r.success && r.value then expand path v else [ ];

  expand = path: set: concatMap (name: visit (path ++ [ name ]) set.${name}) (attrNames set);

  paths = expand [ ] root;
in
if result == "paths" then sort (a: b: a < b) paths
else builtins.deepSeq paths (length paths)
