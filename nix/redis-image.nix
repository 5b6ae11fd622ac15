# The pinned Redis as a layered OCI image: nixpkgs' redis at the locked revision, run as a
# numeric non-root user with /data as its volume, configured by the repository's one Redis
# configuration (deploy/k8s/base/redis/config/, where kustomize can read it too) and the ACL
# file beside it. Deployments mount their own ACL (with the app's password hash) over
# /etc/redis/acl/users.acl; the one baked in lets nobody in but the PING-only health user.
{
  pkgs,
  layeredImage,
  tag,
}:
let
  inherit (pkgs) lib;
  # Without systemd support (a large closure a container never uses), and with TLS (OpenSSL,
  # for `--tls-port`: the compose profile ha and the Kubernetes component redis-tls speak only
  # TLS to and between the data nodes and Sentinels; the service's own image has no OpenSSL).
  # Any override misses the binary cache, so Redis builds from source: its test suite is
  # skipped here (it is long and timing-sensitive) and still runs for the unmodified
  # pkgs.redis in nixpkgs' own CI. pkgs/by-name/re/redis/package.nix takes both switches; fail
  # loudly if a bump renames them.
  switches = {
    withSystemd = false;
    tlsSupport = true;
  };
  redisArgs = lib.functionArgs pkgs.redis.override;
  redis =
    lib.throwIfNot (builtins.all (name: redisArgs ? ${name}) (builtins.attrNames switches))
      "nixpkgs' redis no longer takes ${lib.concatStringsSep " and " (builtins.attrNames switches)}; update nix/redis-image.nix"
      ((pkgs.redis.override switches).overrideAttrs { doCheck = false; });
  redisConfig = ../deploy/k8s/base/redis/config;
  uid = "999";
in
layeredImage {
  name = "timestamp-redis";
  package = redis;
  # Tagged like the service image (nix/image-tag.nix), not with the Redis version: the
  # deployments can then name the tag whatever Redis the nixpkgs pin holds. The version is in
  # the org.opencontainers.image.version label and the description.
  inherit tag uid;
  inherit (redis) version;
  home = "/data";
  description = "Redis ${redis.version} for timestamp-api";
  licenses = lib.concatMapStringsSep " OR " (license: license.spdxId or license.shortName) (
    lib.toList redis.meta.license
  );
  # The health user has no password and may only PING (users.acl); `-e` makes an error reply
  # (NOAUTH, LOADING) a failure, which redis-cli otherwise exits 0 on.
  healthcheck = [
    "/bin/redis-cli"
    "-e"
    "--user"
    "healthcheck"
    "--pass"
    "unused"
    "--no-auth-warning"
    "ping"
  ];
  healthcheckTimeout = 3;
  extraCommands = ''
    mkdir -p etc/redis/acl data
    cp ${redisConfig}/redis.conf etc/redis/redis.conf
    cp ${redisConfig}/users.acl etc/redis/acl/users.acl
  '';
  # Ownership needs fakeroot: a fresh named volume copies /data's owner from the image.
  fakeRootCommands = ''
    chown ${uid}:${uid} data
  '';
  config = {
    Entrypoint = [ "/bin/redis-server" ];
    Cmd = [ "/etc/redis/redis.conf" ];
    WorkingDir = "/data";
    Volumes."/data" = { };
    ExposedPorts."6379/tcp" = { };
  };
}
