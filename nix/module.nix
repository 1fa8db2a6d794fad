# NixOS module: services.evix runs evixd as a systemd *user* service, socket-activated for
# every user (as systemd/evixd.{socket,service}), and services.evix.worker runs
# `evix worker --listen HOST:PORT` as a hardened system service whose token comes from a file.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.evix;
  units = import ./units.nix { inherit lib; };
  inherit (lib) mkOption types;

  # NixOS's unit options from INI sections.
  asNixos = sections: {
    unitConfig = sections.Unit;
  } // lib.optionalAttrs (sections ? Service) { serviceConfig = sections.Service; }
    // lib.optionalAttrs (sections ? Socket) { socketConfig = sections.Socket; }
    // lib.optionalAttrs (sections ? Install && sections.Install ? WantedBy) { wantedBy = sections.Install.WantedBy; };
in
{
  options.services.evix = import ./options.nix { inherit lib pkgs; inherit (units) defaultSocketPath; } // {
    worker = {
      enable = lib.mkEnableOption "an evix remote worker (`evix worker --listen`) as a system service";
      package = mkOption {
        type = types.package;
        default = cfg.package;
        defaultText = lib.literalExpression "config.services.evix.package";
        description = "The evix package whose `evix worker` runs.";
      };
      listen = mkOption {
        type = types.str;
        default = "127.0.0.1:7788";
        example = "0.0.0.0:7788";
        description = "HOST:PORT the worker listens on for an evix master.";
      };
      tokenFile = mkOption {
        type = types.path;
        example = "/run/keys/evix-worker-token";
        description = ''
          A file holding the token a master must present. Read by systemd (LoadCredential) and
          passed to the worker as EVIX_REMOTE_TOKEN; it never reaches the Nix store or a command line.
        '';
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the listen port in the firewall.";
      };
      logLevel = mkOption {
        type = types.enum [ "debug" "info" "warning" "error" "off" ];
        default = "info";
        description = "The worker's log level (EVIX_LOG).";
      };
      extraArgs = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "More `evix worker` options.";
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      environment.systemPackages = [ cfg.package ];
      systemd.user.sockets.evixd = asNixos (units.socket cfg);
      systemd.user.services.evixd = asNixos (units.service cfg);
    })
    (lib.mkIf cfg.worker.enable {
      environment.systemPackages = [ cfg.worker.package ];
      systemd.services.evix-worker = asNixos (units.workerService cfg.worker
        (pkgs.writeShellScript "evix-worker-start" (units.workerScript cfg.worker)));
      networking.firewall.allowedTCPPorts = lib.optional cfg.worker.openFirewall
        (lib.toInt (lib.last (lib.splitString ":" cfg.worker.listen)));
    })
  ];
}
