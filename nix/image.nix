# The service as a layered OCI image: the binary and its runtime closure (glibc, libgcc), a
# passwd and group naming one numeric non-root user, and a writable /tmp. No shell, no package
# manager; the health check runs the binary's own `healthcheck` command. No TLS is compiled in,
# so no CA certificates either.
{
  pkgs,
  package,
  gitRevision,
}:
let
  uid = "10001";
  # `contents` links the package's bin/ into the image root, so the binary has the same path
  # here as in the stand-in image (scripts/standin-images) and in compose's health check.
  binary = "/bin/${package.meta.mainProgram}";
  seconds = n: n * 1000 * 1000 * 1000; # Docker's health check durations are nanoseconds.
in
pkgs.dockerTools.buildLayeredImage {
  name = "timestamp-api";
  tag = package.version;
  # `created` is left at its default (1970-01-01T00:00:01Z): no build-time clock in the image.

  contents = [
    package
    (pkgs.dockerTools.fakeNss.override {
      extraPasswdLines = [ "timestamp-api:x:${uid}:${uid}:timestamp-api:/var/empty:/sbin/nologin" ];
      extraGroupLines = [ "timestamp-api:x:${uid}:" ];
    })
  ];
  extraCommands = ''
    mkdir -m 1777 tmp
  '';

  config = {
    User = "${uid}:${uid}";
    Entrypoint = [ binary ];
    Cmd = [ "serve" ];
    Env = [
      "TSAPI_LISTEN=0.0.0.0:8080"
      "TSAPI_ADMIN_LISTEN=0.0.0.0:9090"
    ];
    ExposedPorts = {
      "8080/tcp" = { };
      "9090/tcp" = { };
    };
    Healthcheck = {
      Test = [
        "CMD"
        binary
        "healthcheck"
      ];
      Interval = seconds 10;
      Timeout = seconds 5;
      StartPeriod = seconds 10;
      Retries = 3;
    };
    Labels = {
      "org.opencontainers.image.title" = "timestamp-api";
      "org.opencontainers.image.description" = package.meta.description;
      "org.opencontainers.image.source" = "https://github.com/timestamp-api/timestamp-api";
      "org.opencontainers.image.version" = package.version;
      "org.opencontainers.image.revision" = gitRevision;
      "org.opencontainers.image.licenses" = "MIT";
    };
  };
}
