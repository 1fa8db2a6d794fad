# The benchmark's reference: one Nix process forcing every drvPath that `evix eval` reports.
#
# Walks `root` with evix's traversal semantics: the root is always expanded; below it an
# attribute set is expanded only if `recurseForDerivations == true`; a value whose `type` is
# "derivation" contributes its drvPath; anything else is skipped. A broken item is skipped
# with `builtins.tryEval`, which catches `throw` and `assert` only, so items whose error
# tryEval cannot catch (e.g. a missing attribute) are listed in `skip` (attribute paths).
#
# With `autoCall`, a function whose arguments all have defaults is called and its result
# visited like the attribute itself (as nix-eval-jobs does); one with a required argument is
# skipped (that is an error event for evix).
#
#   result = "count": the number of drvPaths forced (what the benchmark times)
#   result = "paths": the sorted list of drvPaths (what the benchmark checks evix against)
{ root, skip ? [ ], result ? "count", autoCall ? false }:
let
  inherit (builtins) all attrNames attrValues concatMap concatStringsSep functionArgs isAttrs isFunction
    length listToAttrs sort tryEval;

  skipped = listToAttrs (map (path: { name = concatStringsSep "." path; value = true; }) skip);
  callable = f: autoCall && isFunction f && functionArgs f != { } && all (d: d) (attrValues (functionArgs f));

  # One attribute: [ drvPath ] for a derivation, the paths below it for a set to expand.
  visit = path: v:
    if skipped ? ${concatStringsSep "." path} then [ ]
    else
      let isSet = tryEval (isAttrs v); fn = tryEval (callable v); in
      if fn.success && fn.value then visit path (v { })
      else if !(isSet.success && isSet.value) then [ ]
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
