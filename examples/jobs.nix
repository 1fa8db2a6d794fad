# A small job set in the shape CI evaluators see: nested scopes, multiple outputs,
# dependencies, a broken job, and a Hydra aggregate. Needs nothing but builtins.
{ system ? "x86_64-linux" }:
let
  mk = name: attrs: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo ${name} > $out" ];
  } // attrs);
  hello = mk "hello-1.0" { };
  lib = mk "libfoo-2.1" { outputs = [ "out" "dev" "doc" ]; };
  app = mk "app-0.3" { buildInputs = [ hello lib.dev ]; }
    // { meta = { description = "An app"; license = "MIT"; }; };
in
{
  inherit hello app;
  libfoo = lib;
  tools = {
    recurseForDerivations = true;
    fmt = mk "fmt-1.2" { src = hello; };
    broken = throw "tools.broken is marked broken";
  };
  hidden = { notTraversed = mk "hidden-1" { }; };
  release = mk "release" { } // {
    _hydraAggregate = true;
    constituents = [ hello app "tools.fmt" ];
  };
}
