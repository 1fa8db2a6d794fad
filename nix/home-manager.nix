# home-manager module: services.evix runs evixd as this user's systemd user service,
# socket-activated, exactly as systemd/evixd.{socket,service} (same options as the NixOS module).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.evix;
  units = import ./units.nix { inherit lib; };
in
{
  options.services.evix = import ./options.nix { inherit lib pkgs; inherit (units) defaultSocketPath; };

  config = lib.mkIf cfg.enable {
    home.packages = [ cfg.package ];
    systemd.user.sockets.evixd = units.socket cfg;
    systemd.user.services.evixd = units.service cfg;
  };
}
