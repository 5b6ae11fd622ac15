# services.timestamp-api: the service as a hardened systemd unit, configured through the
# TSAPI_* environment (docs/configuration.md), with secrets handed over by LoadCredential=; and,
# for single-machine installs, a local Redis from nixpkgs' services.redis.servers.<name>, with
# an ACL made at boot from the same password file. flake.nix exposes it as nixosModules.default;
# nix/nixos-test.nix is its VM test; docs/nix.md ("NixOS") documents it and lists the sources
# (nixpkgs, systemd) each option and helper was checked against. It has been evaluated with
# nixpkgs' lib against stand-in NixOS options only, never in a NixOS system: docs/nix.md says
# what is written from source only.
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.timestamp-api;
  inherit (lib) mkOption types;

  # A secret's path, as a string: a path literal (./password) would be copied into the
  # world-readable Nix store. No spaces and no `%`, which systemd would read as a specifier.
  secretPath = types.strMatching "/[^[:space:]%]+";
  # Durations as the service reads them (humantime): "250ms", "10s", "1m 30s", "0".
  duration = types.strMatching "[0-9][0-9a-z ]*";
  # Most settings are unset by default: the service's own default applies (documented in each
  # description), and the variable is left out of the unit.
  unsetByDefault =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };

  # The local Redis: nixpkgs names its unit redis-<name>, its user redis-<name>.
  redisName = "timestamp-api";
  redisUnit = "redis-${redisName}.service";
  redisServer = config.services.redis.servers.${redisName};
  # `bind` may list several addresses (or none: every interface); the first one will do.
  redisHost =
    if redisServer.bind == null then "127.0.0.1" else lib.head (lib.splitString " " redisServer.bind);
  aclUnit = "timestamp-api-redis-acl";
  aclFile = "/run/${aclUnit}/users.acl";

  # Files systemd copies into the unit's credentials directory before it starts (as root, so
  # the originals may be readable by root only); the service finds them at %d/<name>.
  credentials = lib.filterAttrs (_: path: path != null) {
    redis-password = cfg.redis.passwordFile;
    redis-sentinel-password = cfg.redis.sentinel.passwordFile;
    cursor-key = cfg.cursorKeyFile;
  };
  credentialFile = name: if credentials ? ${name} then "%d/${name}" else null;

  # systemd expands specifiers (%d, %n, …) in Environment=; a literal % in a value is %%.
  escapeSpecifiers = lib.replaceStrings [ "%" ] [ "%%" ];
  serviceEnvironment = lib.mapAttrs (_: escapeSpecifiers) (
    lib.filterAttrs (_: value: value != null) {
      TSAPI_LISTEN = cfg.listen;
      TSAPI_ADMIN_LISTEN = cfg.adminListen;
      TSAPI_LOG = cfg.logLevel;
      TSAPI_LOG_FORMAT = cfg.logFormat;
      TSAPI_DRAIN_DELAY = cfg.drainDelay;
      TSAPI_SHUTDOWN_TIMEOUT = cfg.shutdownTimeout;
      TSAPI_MAX_CONNECTIONS = lib.mapNullable toString cfg.maxConnections;
      TSAPI_WRITE_TIMEOUT = cfg.writeTimeout;
      TSAPI_IDLE_TIMEOUT = cfg.idleTimeout;
      TSAPI_RESPONSE_BUFFER_BYTES = lib.mapNullable toString cfg.responseBufferBytes;
      TSAPI_REDIS__URL = cfg.redis.url;
      TSAPI_REDIS__USERNAME = cfg.redis.username;
      TSAPI_REDIS__KEY_PREFIX = cfg.redis.keyPrefix;
      TSAPI_REDIS__CONNECT_TIMEOUT = cfg.redis.connectTimeout;
      TSAPI_REDIS__COMMAND_TIMEOUT = cfg.redis.commandTimeout;
      TSAPI_REDIS__SENTINEL__ADDRESSES = lib.mapNullable (lib.concatStringsSep ",") cfg.redis.sentinel.addresses;
      TSAPI_REDIS__SENTINEL__MASTER = cfg.redis.sentinel.master;
      TSAPI_REDIS__SENTINEL__USERNAME = cfg.redis.sentinel.username;
      TSAPI_REDIS__MIN_REPLICA_ACKS = lib.mapNullable toString cfg.redis.minReplicaAcks;
      TSAPI_REDIS__REPLICA_ACK_TIMEOUT = cfg.redis.replicaAckTimeout;
    }
    // cfg.extraEnvironment
  );
  credentialEnvironment = lib.filterAttrs (_: value: value != null) {
    TSAPI_REDIS__PASSWORD_FILE = credentialFile "redis-password";
    TSAPI_REDIS__SENTINEL__PASSWORD_FILE = credentialFile "redis-sentinel-password";
    TSAPI_CURSOR_KEY_FILE = credentialFile "cursor-key";
  };

  # Each listener holds up to max_connections (default 1024), plus Redis connections and the
  # process' own files; systemd's default soft limit (1024) is below that.
  fileLimit = 2 * (if cfg.maxConnections == null then 1024 else cfg.maxConnections) + 256;

  # The commands the service sends, as scripts/secrets and the tests read them too
  # (deploy/redis-acl/README.md).
  serviceCommands = lib.removeSuffix "\n" (builtins.readFile ../deploy/redis-acl/service.commands);

  # Writes the local Redis' ACL: the default user off, and the service's user with the SHA-256
  # of its password (never the password), limited to the key prefix and the commands the
  # service sends: the same rules as scripts/secrets writes for compose and Kubernetes.
  aclScript = pkgs.writeShellApplication {
    name = aclUnit;
    runtimeInputs = [ pkgs.coreutils ];
    text = ''
      user=${lib.escapeShellArg cfg.redis.username}
      prefix=${lib.escapeShellArg cfg.redis.keyPrefix}
      commands=${lib.escapeShellArg serviceCommands}
      # The service strips one trailing newline (and a carriage return before it); so does this
      # (`$(…)` alone would strip every trailing newline: the x keeps them).
      password=$(cat "$CREDENTIALS_DIRECTORY/redis-password"; printf x)
      password=''${password%x}
      password=''${password%$'\n'}
      password=''${password%$'\r'}
      hash=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
      printf '%s\n' \
        'user default off' \
        "user $user on #$hash ~$prefix* resetchannels -@all $commands" \
        >"$RUNTIME_DIRECTORY/users.acl.new"
      mv "$RUNTIME_DIRECTORY/users.acl.new" "$RUNTIME_DIRECTORY/users.acl"
    '';
  };

  # What systemd-analyze security rates, for a unit that needs the network and nothing else
  # (docs/nix.md, "The VM test", has the exposure this comes to).
  hardening =
    lib.genAttrs [
      "NoNewPrivileges"
      "LockPersonality"
      "MemoryDenyWriteExecute"
      "PrivateDevices"
      "PrivateMounts"
      "PrivateTmp"
      "PrivateUsers"
      "ProtectClock"
      "ProtectControlGroups"
      "ProtectHome"
      "ProtectHostname"
      "ProtectKernelLogs"
      "ProtectKernelModules"
      "ProtectKernelTunables"
      "RestrictNamespaces"
      "RestrictRealtime"
      "RestrictSUIDSGID"
    ] (_: true)
    // {
      CapabilityBoundingSet = "";
      AmbientCapabilities = "";
      DevicePolicy = "closed";
      KeyringMode = "private";
      ProtectProc = "invisible";
      ProtectSystem = "strict";
      SystemCallArchitectures = "native";
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
      ];
      SystemCallErrorNumber = "EPERM";
      UMask = "0077";
    };
in
{
  options.services.timestamp-api = {
    enable = lib.mkEnableOption "timestamp-api, named timestamps in Redis as JSON over HTTP";

    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.timestamp-api;
      defaultText = lib.literalExpression "timestamp-api.packages.\${pkgs.stdenv.hostPlatform.system}.timestamp-api";
      description = "The timestamp-api package: by default, this flake's build for the host.";
    };

    listen = mkOption {
      type = types.strMatching ".+:[0-9]+";
      default = "127.0.0.1:8080";
      example = "0.0.0.0:8080";
      description = "Address of the API listener (`listen`).";
    };

    adminListen = mkOption {
      type = types.strMatching ".+:[0-9]+";
      default = "127.0.0.1:9090";
      description = ''
        Address of the admin listener (`admin_listen`): `/livez`, `/readyz`, `/metrics`,
        `/version`. Keep it off public networks;
        {option}`services.timestamp-api.openFirewall` never opens it.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the port of {option}`services.timestamp-api.listen` in the firewall (never the
        admin port).
      '';
    };

    logLevel = mkOption {
      type = types.str;
      default = "info";
      example = "warn,timestamp_api=debug";
      description = "Log filter (`log`), in tracing's `EnvFilter` syntax.";
    };

    logFormat = mkOption {
      type = types.enum [
        "json"
        "text"
      ];
      default = "json";
      description = "`json` (one object per line, for the journal and log shippers) or `text`.";
    };

    cursorKeyFile = unsetByDefault secretPath ''
      File holding the key that signs list cursors (`cursor_key_file`, at least 32 bytes),
      outside the Nix store; systemd passes it to the service as a credential. Every instance
      behind one load balancer needs the same key; `null` draws a random key at each start.
    '';

    maxConnections = unsetByDefault (types.ints.between 1 100000) ''
      Most connections each listener holds open (`max_connections`); `null` keeps the
      service's default, 1024. The unit's file limit follows it.
    '';

    writeTimeout = unsetByDefault duration "`write_timeout`; `null` keeps the default, `10s`.";
    idleTimeout = unsetByDefault duration "`idle_timeout`; `null` keeps the default, `10s`.";
    responseBufferBytes = unsetByDefault (types.ints.between 1025024 1073741824) ''
      `response_buffer_bytes`: most bytes list pages may hold at once, across connections;
      `null` keeps the service's default, 16 MiB (docs/operations.md, "Memory").
    '';
    drainDelay = unsetByDefault duration ''
      `drain_delay`: after SIGTERM, how long to keep serving while `/readyz` answers 503;
      `null` keeps the service's default (`0s`). Behind a load balancer, a few seconds.
    '';
    shutdownTimeout = unsetByDefault duration ''
      `shutdown_timeout`: then, how long requests in flight may take; `null` keeps the
      service's default (`10s`). systemd's stop timeout (90 s) must exceed both.
    '';

    redis = {
      url = unsetByDefault types.str ''
        `redis.url`: `redis://host:port/db` or `redis+unix:///path`, never with credentials in
        it. `null` keeps the service's default (`redis://127.0.0.1:6379/0`), or the local
        server's address with {option}`services.timestamp-api.redis.createLocally`.
      '';

      username = unsetByDefault (types.strMatching "[^[:space:]]+") ''
        `redis.username`: the ACL user to authenticate as; `null` is Redis' `default` user.
        `timestamp-api` with {option}`services.timestamp-api.redis.createLocally`.
      '';

      passwordFile = unsetByDefault secretPath ''
        File holding the Redis password (`redis.password_file`), outside the Nix store, for
        example from sops-nix or agenix; it may be readable by root only. systemd copies it
        into the unit's credentials directory; it never enters the store or the environment.
      '';

      keyPrefix = mkOption {
        type = types.strMatching "[^][*?\\[:space:][:cntrl:]]{1,64}";
        default = "ts:";
        description = ''
          `redis.key_prefix`: every key the service touches starts with it, and the local
          Redis' ACL grants exactly `<prefix>*`.
        '';
      };

      connectTimeout = unsetByDefault duration "`redis.connect_timeout`; `null` keeps `250ms`.";
      commandTimeout = unsetByDefault duration "`redis.command_timeout`; `null` keeps `250ms`.";

      sentinel = {
        addresses = unsetByDefault (types.nonEmptyListOf (types.strMatching ".+:[0-9]+")) ''
          `redis.sentinel.addresses`: the Sentinels, as `host:port`. Set with
          {option}`services.timestamp-api.redis.sentinel.master` to find the primary through
          Sentinel.
        '';
        master = unsetByDefault types.str "`redis.sentinel.master`: the name Sentinel monitors.";
        username = unsetByDefault (types.strMatching "[^[:space:]]+") ''
          `redis.sentinel.username`, if the Sentinels require one.
        '';
        passwordFile = unsetByDefault secretPath ''
          File holding the Sentinels' password (`redis.sentinel.password_file`), outside the
          store; passed as a credential like
          {option}`services.timestamp-api.redis.passwordFile`.
        '';
      };

      minReplicaAcks = unsetByDefault (types.ints.between 0 16) ''
        `redis.min_replica_acks`: how many replicas must acknowledge a write (Redis `WAIT`;
        the data nodes' ACL then needs `+wait`); `null` keeps the default, 0.
      '';
      replicaAckTimeout = unsetByDefault duration ''
        `redis.replica_ack_timeout`: how long to wait for their acknowledgements; `null`
        keeps the default, `100ms`.
      '';

      createLocally = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Also run a Redis for the service on this machine: nixpkgs'
          `services.redis.servers.timestamp-api` on 127.0.0.1:6379 (its options change the
          rest, such as `port`), with an append-only file fsynced on every write, no eviction,
          and an ACL that turns the default user off and lets the service's user reach its key
          prefix only. The ACL is written at boot by `timestamp-api-redis-acl.service` from
          {option}`services.timestamp-api.redis.passwordFile` (a SHA-256 of the password, never
          the password) into `/run/timestamp-api-redis-acl/`, readable by Redis' user only.
        '';
      };
    };

    extraEnvironment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        TSAPI_REDIS__KEY_PREFIX = "staging:";
      };
      description = ''
        More `TSAPI_*` variables, for keys without an option here (docs/configuration.md). They
        end up in the unit file in the Nix store: never a secret.
      '';
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = (cfg.redis.sentinel.addresses == null) == (cfg.redis.sentinel.master == null);
            message = "services.timestamp-api.redis.sentinel: set both addresses and master, or neither.";
          }
          {
            assertion = lib.all (lib.hasPrefix "TSAPI_") (lib.attrNames cfg.extraEnvironment);
            message = ''
              services.timestamp-api.extraEnvironment: the service reads TSAPI_* variables only.
            '';
          }
          {
            assertion = lib.all (path: !lib.hasPrefix "${builtins.storeDir}/" path) (
              lib.attrValues credentials
            );
            message = ''
              services.timestamp-api: a secret file is in the Nix store, which every user can
              read.
            '';
          }
        ];

        systemd.services.timestamp-api = {
          description = "timestamp-api: named timestamps in Redis, as JSON over HTTP";
          documentation = [ "https://github.com/timestamp-api/timestamp-api/tree/main/docs" ];
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          # JSON lines on stdout go to the journal. The credentials' paths are left unescaped:
          # %d is systemd's credentials directory (systemd.unit(5), "Specifiers").
          environment = serviceEnvironment // credentialEnvironment;
          serviceConfig = hardening // {
            # No sd_notify: the unit is up once the binary runs; /readyz tells when it serves.
            Type = "exec";
            ExecStart = "${lib.getExe cfg.package} serve";
            Restart = "on-failure";
            RestartSec = "2s";
            DynamicUser = true;
            RemoveIPC = true;
            LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") credentials;
            LimitNOFILE = fileLimit;
            RestrictAddressFamilies = [
              "AF_INET"
              "AF_INET6"
              "AF_UNIX"
            ];
          };
        };

        networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [
          (lib.toInt (lib.last (lib.splitString ":" cfg.listen)))
        ];
      }

      (lib.mkIf cfg.redis.createLocally {
        assertions = [
          {
            assertion = cfg.redis.passwordFile != null && cfg.redis.username != null;
            message = ''
              services.timestamp-api.redis.createLocally needs redis.passwordFile and
              redis.username: the local Redis' ACL is made from them.
            '';
          }
          {
            assertion =
              cfg.redis.sentinel.addresses == null
              && (cfg.redis.minReplicaAcks == null || cfg.redis.minReplicaAcks == 0);
            message = ''
              services.timestamp-api.redis.createLocally runs one Redis, without Sentinels or
              replicas: unset redis.sentinel and redis.minReplicaAcks.
            '';
          }
        ];

        services = {
          timestamp-api.redis = {
            url = lib.mkDefault "redis://${redisHost}:${toString redisServer.port}/0";
            username = lib.mkDefault "timestamp-api";
          };
          redis.servers.${redisName} = {
            enable = true;
            port = lib.mkDefault 6379;
            # Persistence as the repository's redis.conf has it (docs/adr/0002): an acknowledged
            # write is on disk.
            appendOnly = lib.mkDefault true;
            appendFsync = lib.mkDefault "always";
            settings = {
              aclfile = aclFile;
              maxmemory-policy = lib.mkDefault "noeviction";
            };
          };
        };

        systemd.services = {
          ${aclUnit} = {
            description = "Redis ACL for timestamp-api, from its password file";
            requiredBy = [ redisUnit ];
            before = [ redisUnit ];
            serviceConfig = hardening // {
              Type = "oneshot";
              RemainAfterExit = true;
              ExecStart = lib.getExe aclScript;
              # Redis' own user, so the file and its directory (kept while this unit is
              # active) belong to it; Redis restarts do not run this again.
              User = redisServer.user;
              RuntimeDirectory = aclUnit;
              RuntimeDirectoryMode = "0700";
              LoadCredential = "redis-password:${cfg.redis.passwordFile}";
              PrivateNetwork = true;
              RestrictAddressFamilies = "none";
            };
          };
          timestamp-api = {
            wants = [ redisUnit ];
            after = [ redisUnit ];
          };
        };
      })
    ]
  );
}
