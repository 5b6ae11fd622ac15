# The service as a layered OCI image: the binary and its runtime closure (glibc, libgcc), user
# 10001, a writable /tmp. The health check runs the binary's own `healthcheck` command. No TLS
# is compiled in, so no CA certificates either.
{
  layeredImage,
  package,
  tag,
}:
let
  binary = "/bin/${package.meta.mainProgram}";
in
layeredImage {
  name = "timestamp-api";
  inherit package tag;
  inherit (package) version;
  uid = "10001";
  home = "/var/empty";
  inherit (package.meta) description;
  licenses = "MIT";
  healthcheck = [
    binary
    "healthcheck"
  ];
  healthcheckTimeout = 5;
  config = {
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
  };
}
