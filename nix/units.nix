# The systemd units of evix, as INI sections ({ Unit = …; Service = …; … }), shared by the
# NixOS module (nix/module.nix) and the home-manager module (nix/home-manager.nix) so both
# run exactly what systemd/evixd.{socket,service} describe: a socket-activated user service.
{ lib }:

let
  # evixd's options from services.evix (null: evixd's own default applies).
  limitArgs = cfg:
    lib.concatLists (lib.mapAttrsToList (flag: value: lib.optionals (value != null) [ flag (toString value) ]) {
      "--max-sessions" = cfg.maxSessions;
      "--max-session-memory" = cfg.maxSessionMemory;
      "--warm-seconds" = cfg.warmSeconds;
      "--max-workers" = cfg.maxWorkers;
    });
  # $XDG_RUNTIME_DIR/evix.sock: where evix, evixd and the client look without --socket.
  defaultSocketPath = "%t/evix.sock";
in
{
  inherit limitArgs defaultSocketPath;

  socket = cfg: {
    Unit = {
      Description = "evix daemon socket (warm Nix evaluation sessions)";
      Documentation = "man:systemd.socket(5)";
    };
    Socket = {
      ListenStream = cfg.socketPath;
      SocketMode = "0600";
      DirectoryMode = "0700";
      Accept = "no";
    };
    Install.WantedBy = [ "sockets.target" ];
  };

  service = cfg: {
    Unit = {
      Description = "evix daemon (warm Nix evaluation sessions for evix eval/query/diff)";
      Requires = "evixd.socket";
      After = "evixd.socket";
    };
    Service = {
      # evixd notifies READY=1 once its socket is served, STOPPING=1 when it stops.
      Type = "notify";
      NotifyAccess = "main";
      # --socket only for another path than evixd's default, which is the socket's default.
      ExecStart = lib.escapeShellArgs ([ "${cfg.package}/bin/evixd" "--foreground" ]
        ++ lib.optionals (cfg.socketPath != defaultSocketPath) [ "--socket" cfg.socketPath ]
        ++ limitArgs cfg ++ cfg.extraArgs);
      Environment = [ "EVIX_LOG=${cfg.logLevel}" ];
      KillMode = "mixed";
      TimeoutStopSec = 20;
      Restart = "on-failure";
      RestartSec = 2;
      NoNewPrivileges = true;
    };
    Install.Also = [ "evixd.socket" ];
  };

  # `evix worker --listen HOST:PORT`, a system service: its token is read from a systemd
  # credential (LoadCredential of tokenFile) into EVIX_REMOTE_TOKEN, never put on a command line.
  workerScript = worker: ''
    set -eu
    EVIX_REMOTE_TOKEN=$(cat "$CREDENTIALS_DIRECTORY/token")
    export EVIX_REMOTE_TOKEN
    exec ${lib.escapeShellArgs ([ "${worker.package}/bin/evix" "worker" "--listen" worker.listen ] ++ worker.extraArgs)}
  '';

  workerService = worker: start: {
    Unit = {
      Description = "evix remote worker (evaluates for an evix master on ${worker.listen})";
      After = [ "network.target" "nix-daemon.socket" ];
      Wants = [ "nix-daemon.socket" ];
    };
    Service = {
      ExecStart = start;
      LoadCredential = "token:${toString worker.tokenFile}";
      Environment = [ "EVIX_LOG=${worker.logLevel}" "NIX_REMOTE=daemon" "HOME=%C/evix-worker" ];
      Restart = "on-failure";
      RestartSec = 2;
      DynamicUser = true;
      NoNewPrivileges = true;
      ProtectSystem = "strict";
      ProtectHome = true;
      PrivateTmp = true;
      PrivateDevices = true;
      ProtectKernelTunables = true;
      ProtectKernelModules = true;
      ProtectControlGroups = true;
      RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
      RestrictNamespaces = true;
      LockPersonality = true;
      RestrictRealtime = true;
      RestrictSUIDSGID = true;
      CacheDirectory = "evix-worker"; # Nix's own cache (fetched flakes) lives under HOME
    };
    Install.WantedBy = [ "multi-user.target" ];
  };
}
