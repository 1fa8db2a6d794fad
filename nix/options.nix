# services.evix options shared by the NixOS and home-manager modules: evixd as a
# socket-activated systemd user service. `pkgs.evix` comes from evix's overlay; the flake's
# modules set it to the flake's own package.
{ lib, pkgs, defaultSocketPath }:

let
  inherit (lib) mkOption types;
  limit = what: mkOption {
    type = types.nullOr types.ints.positive;
    default = null;
    description = "${what}; null keeps evixd's default (`evixd --help`).";
  };
in
{
  enable = lib.mkEnableOption "the evix daemon (evixd), a systemd user service started by its socket on first use";

  package = mkOption {
    type = types.package;
    default = pkgs.evix or (throw "services.evix.package: apply evix's overlays.default or set this option");
    defaultText = lib.literalExpression "pkgs.evix";
    description = "The evix package whose evixd runs.";
  };

  socketPath = mkOption {
    type = types.str;
    default = defaultSocketPath;
    description = ''
      Where the socket listens (systemd specifiers allowed: %t is $XDG_RUNTIME_DIR).
      Clients look at $XDG_RUNTIME_DIR/evix.sock; for another path set EVIX_SOCKET for them.
    '';
  };

  logLevel = mkOption {
    type = types.enum [ "debug" "info" "warning" "error" "off" ];
    default = "info";
    description = "evixd's log level in the journal (EVIX_LOG).";
  };

  maxSessions = limit "Warm sessions kept (--max-sessions); the least recently used goes first";
  maxSessionMemory = limit "Estimated memory of all warm graphs in MiB (--max-session-memory)";
  warmSeconds = limit "Seconds a session keeps its started workers after its last eval (--warm-seconds)";
  maxWorkers = limit "Cap on a request's --workers (--max-workers)";

  extraArgs = mkOption {
    type = types.listOf types.str;
    default = [ ];
    example = [ "--max-connections" "128" ];
    description = "More evixd options.";
  };
}
