# The service as a layered OCI image: the binary and its runtime closure (glibc, libgcc), user
# 10001, a writable /tmp. The health check runs the binary's own `healthcheck` command. TLS to
# Redis is rustls inside the binary, so there is no OpenSSL; and no CA certificates unless
# `caBundle` is given (the flake's image-with-ca-bundle: nixpkgs' cacert, for a managed Redis
# whose certificate a public CA signs). Otherwise redis.tls.ca_file names a mounted bundle.
{
  layeredImage,
  package,
  tag,
  caBundle ? null,
}:
let
  binary = "/bin/${package.meta.mainProgram}";
  # The service finds the platform's roots through SSL_CERT_FILE (rustls-native-certs).
  caEnvironment =
    if caBundle == null then [ ] else [ "SSL_CERT_FILE=${caBundle}/etc/ssl/certs/ca-bundle.crt" ];
in
layeredImage {
  name = "timestamp-api";
  inherit package tag;
  extraContents = if caBundle == null then [ ] else [ caBundle ];
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
    ]
    ++ caEnvironment;
    ExposedPorts = {
      "8080/tcp" = { };
      "9090/tcp" = { };
    };
  };
}
