# A small stand-in for the parts of nixpkgs' `lib` that flake.nix and nix/*.nix use, so they
# evaluate with a bare Nix (no nixpkgs here). Option and override markers are plain sets that
# eval-module.nix resolves; everything else behaves as lib's function of the same name.
let
  inherit (builtins) isAttrs isList isString concatLists filter foldl' head length listToAttrs
    attrNames mapAttrs match elemAt split;
  lib = rec {
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = what: mkOption { default = false; description = "Whether to enable ${what}."; type = types.bool; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    types = {
      bool = "bool"; str = "str"; path = "path"; package = "package";
      ints.positive = "positive int";
      enum = values: { enum = values; };
      listOf = t: { listOf = t; };
      nullOr = t: { nullOr = t; };
    };

    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: attrs: if cond then attrs else { };
    concatLists = builtins.concatLists;
    concatStringsSep = builtins.concatStringsSep;
    mapAttrsToList = f: attrs: map (name: f name attrs.${name}) (attrNames attrs);
    genAttrs = names: f: listToAttrs (map (name: { inherit name; value = f name; }) names);
    last = list: elemAt list (length list - 1);
    splitString = sep: s: filter isString (split (escapeRegex sep) s);
    escapeRegex = s: builtins.replaceStrings [ "." ":" "/" ] [ "\\." ":" "/" ] s;
    toInt = s: builtins.fromJSON s;
    isDerivation = x: isAttrs x && (x.type or null) == "derivation";
    getDev = p: p.dev or p;
    cleanSource = p: p;
    fileset = { toSource = { root, fileset }: root; unions = list: list; };
    licenses.eupl12 = { spdxId = "EUPL-1.2"; };

    # As lib.escapeShellArg: quoted only when the word has a character the shell would read.
    escapeShellArg = arg:
      if match "[[:alnum:],._+:@%/=-]+" arg != null then arg
      else "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] arg}'";
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);
  };
in
lib
