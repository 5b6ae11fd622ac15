# What both images share: a dockerTools layered image of one package with a passwd and group
# naming a single numeric non-root user (fakeNss), a writable /tmp, a health check, OCI labels,
# no shell, no package manager, and no build-time clock (`created` keeps nixpkgs' fixed default).
# Arguments as nixpkgs defines them: buildLayeredImage and streamLayeredImage (name, tag,
# contents, config, extraCommands, fakeRootCommands) in pkgs/build-support/docker/default.nix;
# fakeNss (extraPasswdLines, extraGroupLines) in pkgs/by-name/fa/fakeNss/package.nix. `config`
# is copied into the image configuration as is, so Docker's Healthcheck keys pass through.
{
  pkgs,
  gitRevision,
}:
{
  name,
  package,
  # The tag (nix/image-tag.nix) and the version of what is inside (the OCI version label).
  tag,
  version,
  uid,
  home,
  description,
  licenses,
  # The health check's command (absolute paths: there is no shell) and its timeout in seconds.
  healthcheck,
  healthcheckTimeout,
  config,
  # More packages in the image root, beside `package` (the CA bundle, when asked for).
  extraContents ? [ ],
  extraCommands ? "",
  fakeRootCommands ? "",
}:
let
  seconds = n: n * 1000 * 1000 * 1000; # Docker's health check durations are nanoseconds.
in
pkgs.dockerTools.buildLayeredImage {
  inherit name tag fakeRootCommands;

  # `package` links its bin/ into the image root, so the programs sit at /bin as in the
  # stand-in images (scripts/standin-images) and as compose and Kubernetes call them.
  contents = [
    package
    (pkgs.dockerTools.fakeNss.override {
      extraPasswdLines = [ "${name}:x:${uid}:${uid}:${name}:${home}:/sbin/nologin" ];
      extraGroupLines = [ "${name}:x:${uid}:" ];
    })
  ]
  ++ extraContents;
  extraCommands = ''
    mkdir -m 1777 tmp
  ''
  + extraCommands;

  config = config // {
    User = "${uid}:${uid}";
    Healthcheck = {
      Test = [ "CMD" ] ++ healthcheck;
      Interval = seconds 10;
      Timeout = seconds healthcheckTimeout;
      StartPeriod = seconds 10;
      Retries = 3;
    };
    Labels = {
      "org.opencontainers.image.title" = name;
      "org.opencontainers.image.description" = description;
      "org.opencontainers.image.source" = "https://github.com/timestamp-api/timestamp-api";
      "org.opencontainers.image.version" = version;
      "org.opencontainers.image.revision" = gitRevision;
      "org.opencontainers.image.licenses" = licenses;
    };
  };
}
