# The pinned Redis as a layered OCI image: nixpkgs' redis at the locked revision, run as a
# numeric non-root user with /data as its volume, configured by the repository's one Redis
# configuration (deploy/k8s/base/redis/config/, where kustomize can read it too) and the ACL
# file beside it. Deployments mount their own ACL (with the app's password hash) over
# /etc/redis/acl/users.acl; the one baked in lets nobody in but the PING-only health user.
{
  pkgs,
  gitRevision,
}:
let
  inherit (pkgs) lib;
  # Without systemd support (a large closure a container never uses) and without TLS (the
  # deployments keep Redis on a private network; nothing here speaks TLS to it). Any override
  # misses the binary cache, so Redis builds from source: its test suite is skipped here (it is
  # long and timing-sensitive) and still runs for the unmodified pkgs.redis in nixpkgs' own CI.
  # pkgs/by-name/re/redis/package.nix takes both switches; fail loudly if a bump renames them.
  switches = {
    withSystemd = false;
    tlsSupport = false;
  };
  redisArgs = lib.functionArgs pkgs.redis.override;
  redis =
    lib.throwIfNot (builtins.all (name: redisArgs ? ${name}) (builtins.attrNames switches))
      "nixpkgs' redis no longer takes ${lib.concatStringsSep " and " (builtins.attrNames switches)}; update nix/redis-image.nix"
      ((pkgs.redis.override switches).overrideAttrs { doCheck = false; });
  config = ../deploy/k8s/base/redis/config;
  uid = "999";
  seconds = n: n * 1000 * 1000 * 1000;
in
pkgs.dockerTools.buildLayeredImage {
  name = "timestamp-redis";
  tag = redis.version;

  # `redis` here links redis-server and redis-cli at /bin, the paths compose's and Kubernetes'
  # commands and probes use, in this image and in the stand-in alike.
  contents = [
    redis
    (pkgs.dockerTools.fakeNss.override {
      extraPasswdLines = [ "redis:x:${uid}:${uid}:redis:/data:/sbin/nologin" ];
      extraGroupLines = [ "redis:x:${uid}:" ];
    })
  ];
  extraCommands = ''
    mkdir -p etc/redis/acl data
    mkdir -m 1777 tmp
    cp ${config}/redis.conf etc/redis/redis.conf
    cp ${config}/users.acl etc/redis/acl/users.acl
  '';
  # Ownership needs fakeroot: a fresh named volume copies /data's owner from the image.
  fakeRootCommands = ''
    chown ${uid}:${uid} data
  '';

  config = {
    User = "${uid}:${uid}";
    Entrypoint = [ "/bin/redis-server" ];
    Cmd = [ "/etc/redis/redis.conf" ];
    WorkingDir = "/data";
    Volumes."/data" = { };
    ExposedPorts."6379/tcp" = { };
    Healthcheck = {
      # The health user has no password and may only PING (users.acl); `-e` makes an
      # error reply (NOAUTH, LOADING) a failure, which redis-cli otherwise exits 0 on.
      Test = [
        "CMD"
        "/bin/redis-cli"
        "-e"
        "--user"
        "healthcheck"
        "--pass"
        "unused"
        "--no-auth-warning"
        "ping"
      ];
      Interval = seconds 10;
      Timeout = seconds 3;
      StartPeriod = seconds 10;
      Retries = 3;
    };
    Labels = {
      "org.opencontainers.image.title" = "timestamp-redis";
      "org.opencontainers.image.description" = "Redis ${redis.version} for timestamp-api";
      "org.opencontainers.image.source" = "https://github.com/timestamp-api/timestamp-api";
      "org.opencontainers.image.version" = redis.version;
      "org.opencontainers.image.revision" = gitRevision;
      "org.opencontainers.image.licenses" = lib.concatMapStringsSep " OR " (
        license: license.spdxId or license.shortName
      ) (lib.toList redis.meta.license);
    };
  };
}
