# The library of the realistic benchmark set: the nixpkgs lib functions its stdenv and packages
# use, written out with builtins so that evaluating them is real interpreter work (folds,
# string building, set merges), as it is in nixpkgs.
let
  b = builtins;
  inherit (b) attrNames concatStringsSep elem filter foldl' functionArgs genList head intersectAttrs
    isAttrs isFunction isList isString length listToAttrs replaceStrings stringLength substring tail;

  lib = rec {
    inherit (b) all any attrNames concatMap concatStringsSep elem filter foldl' genList head isAttrs
      isFunction isList isString length listToAttrs replaceStrings stringLength substring tail;

    # ---- fixed points and overlays ------------------------------------------------------
    fix = f: let x = f x; in x;
    extends = overlay: f: final: let prev = f final; in prev // overlay final prev;
    composeExtensions = f: g: final: prev:
      let fApplied = f final prev; prev' = prev // fApplied; in fApplied // g final prev';
    composeManyExtensions = foldl' (acc: o: composeExtensions acc o) (final: prev: { });

    # ---- lists ------------------------------------------------------------------------------
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    flatten = x: if isList x then b.concatMap flatten x else [ x ];
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    subtractLists = e: filter (x: !(elem x e));
    imap0 = f: list: genList (n: f n (b.elemAt list n)) (length list);
    last = list: b.elemAt list (length list - 1);
    range = first: lastN: if first > lastN then [ ] else genList (n: first + n) (lastN - first + 1);

    # ---- strings ----------------------------------------------------------------------------
    concatStrings = concatStringsSep "";
    concatMapStrings = f: list: concatStrings (map f list);
    concatMapStringsSep = sep: f: list: concatStringsSep sep (map f list);
    optionalString = c: s: if c then s else "";
    hasPrefix = pre: s: substring 0 (stringLength pre) s == pre;
    hasSuffix = suf: s:
      let ls = stringLength s; lsuf = stringLength suf; in ls >= lsuf && substring (ls - lsuf) ls s == suf;
    removePrefix = pre: s: if hasPrefix pre s then substring (stringLength pre) (-1) s else s;
    splitString = sep: s: filter isString (b.split (escapeRegex sep) s);
    escapeRegex = replaceStrings [ "." "+" "*" "?" "(" ")" "[" "]" "{" "}" "|" "^" "$" "\\" ]
      [ "\\." "\\+" "\\*" "\\?" "\\(" "\\)" "\\[" "\\]" "\\{" "\\}" "\\|" "\\^" "\\$" "\\\\" ];
    stringToCharacters = s: genList (p: substring p 1 s) (stringLength s);
    lowerChars = stringToCharacters "abcdefghijklmnopqrstuvwxyz";
    upperChars = stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    toUpper = replaceStrings lowerChars upperChars;
    toLower = replaceStrings upperChars lowerChars;
    escapeShellArg = arg: "'${replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    toShellVar = name: value: "${name}=${escapeShellArg value}";
    versionAtLeast = v1: v2: b.compareVersions v1 v2 >= 0;
    versionOlder = v1: v2: b.compareVersions v2 v1 > 0;
    majorMinor = v: concatStringsSep "." (b.genList (b.elemAt (splitVersion v)) 2);
    splitVersion = v: let parts = b.splitVersion v; in if length parts < 2 then parts ++ [ "0" ] else parts;
    enableFeature = flag: feature: (if flag then "--enable-" else "--disable-") + feature;
    withFeature = flag: feature: (if flag then "--with-" else "--without-") + feature;
    cmakeBool = name: value: "-D${name}:BOOL=${if value then "TRUE" else "FALSE"}";
    mesonBool = name: value: "-D${name}=${if value then "true" else "false"}";

    # ---- attribute sets ---------------------------------------------------------------------
    optionalAttrs = c: s: if c then s else { };
    mapAttrs = b.mapAttrs;
    filterAttrs = pred: set: listToAttrs (b.concatMap (n: let v = set.${n}; in if pred n v then [ { name = n; value = v; } ] else [ ]) (attrNames set));
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    genAttrs' = names: f: listToAttrs (map f names);
    nameValuePair = name: value: { inherit name value; };
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    attrByPath = path: default: set:
      if path == [ ] then set
      else if isAttrs set && set ? ${head path} then attrByPath (tail path) default set.${head path}
      else default;
    recursiveUpdate = lhs: rhs:
      foldl' (acc: n: acc // {
        ${n} = if isAttrs (lhs.${n} or null) && isAttrs rhs.${n} then recursiveUpdate lhs.${n} rhs.${n} else rhs.${n};
      }) lhs (attrNames rhs);
    recurseIntoAttrs = s: s // { recurseForDerivations = true; };

    # ---- meta data ----------------------------------------------------------------------------
    licenses = mapAttrs (n: l: { shortName = n; url = "https://spdx.org/licenses/${l.spdxId}.html"; free = true; } // l) {
      mit = { spdxId = "MIT"; fullName = "MIT License"; };
      gpl2Plus = { spdxId = "GPL-2.0-or-later"; fullName = "GNU General Public License v2.0 or later"; };
      gpl3Plus = { spdxId = "GPL-3.0-or-later"; fullName = "GNU General Public License v3.0 or later"; };
      lgpl21Plus = { spdxId = "LGPL-2.1-or-later"; fullName = "GNU Lesser General Public License v2.1 or later"; };
      asl20 = { spdxId = "Apache-2.0"; fullName = "Apache License 2.0"; };
      bsd3 = { spdxId = "BSD-3-Clause"; fullName = "BSD 3-clause License"; };
      mpl20 = { spdxId = "MPL-2.0"; fullName = "Mozilla Public License 2.0"; };
      zlib = { spdxId = "Zlib"; fullName = "zlib License"; };
      unfree = { spdxId = "LicenseRef-unfree"; fullName = "Unfree"; free = false; };
      unfreeRedistributable = { spdxId = "LicenseRef-unfree-redist"; fullName = "Unfree redistributable"; free = false; };
    };
    maintainers = listToAttrs (genList (i: {
      name = "m${toString i}";
      value = { name = "Maintainer ${toString i}"; email = "m${toString i}@example.org"; github = "m${toString i}"; githubId = 1000 + i; };
    }) 200);
    platforms = rec {
      linux = [ "x86_64-linux" "i686-linux" "aarch64-linux" "riscv64-linux" ];
      darwin = [ "x86_64-darwin" "aarch64-darwin" ];
      unix = linux ++ darwin;
      all = unix;
      x86_64 = [ "x86_64-linux" "x86_64-darwin" ];
    };

    # ---- derivations --------------------------------------------------------------------------
    getOutput = output: pkg: if pkg ? outputSpecified && pkg.outputSpecified then pkg else pkg.${output} or pkg.out or pkg;
    getDev = getOutput "dev";
    getLib = getOutput "lib";
    getBin = getOutput "bin";
    makeSearchPath = sub: paths: concatStringsSep ":" (map (p: "${p}/${sub}") (filter (p: p != null) paths));
    makeBinPath = pkgs: makeSearchPath "bin" (map getBin pkgs);
    makeLibraryPath = pkgs: makeSearchPath "lib" (map getLib pkgs);

    # An extra condition on a derivation: the set stays readable, its paths throw (as extendDerivation).
    extendDerivation = condition: passthru: drv:
      let
        outputs = drv.outputs or [ "out" ];
        commonAttrs = drv // listToAttrs (map (o: { name = o; value = outputOf o; }) outputs) // passthru // {
          drvPath = assert condition; drv.drvPath;
          outPath = assert condition; drv.outPath;
        };
        outputOf = o: drv.${o} // { inherit (drv) type; drvPath = assert condition; drv.${o}.drvPath;
          outPath = assert condition; drv.${o}.outPath; outputSpecified = true; outputName = o; };
      in
      commonAttrs;

    # ---- callPackage, override, scopes ----------------------------------------------------------
    makeOverridable = f: origArgs:
      let
        result = f origArgs;
        overrideWith = newArgs: origArgs // (if isFunction newArgs then newArgs origArgs else newArgs);
        override = newArgs: makeOverridable f (overrideWith newArgs);
      in
      if isAttrs result then result // { inherit override; overrideDerivation = g: makeOverridable (args: (f args).overrideAttrs g) origArgs; }
      else result;

    callPackageWith = autoArgs: fn: args:
      let
        fargs = functionArgs fn;
        allArgs = intersectAttrs fargs autoArgs // args;
        missing = filter (n: !fargs.${n} && !(allArgs ? ${n})) (attrNames fargs);
      in
      if missing == [ ] then makeOverridable fn allArgs
      # abort, as nixpkgs does, so that builtins.tryEval cannot hide a missing dependency
      else abort "lib.customisation.callPackageWith: Function called without required argument \"${head missing}\"";

    makeScope = newScope: f:
      let
        self = f self // {
          newScope = scope: newScope (self // scope);
          callPackage = self.newScope { };
          overrideScope = g: makeScope newScope (extends g f);
          packages = f;
        };
      in
      self;
  };
in
lib
