# The crate, built with crane: the dependencies once (buildDepsOnly), then the binary on top.
{
  pkgs,
  craneLib,
  gitRevision,
}:
let
  inherit (pkgs) lib;
  root = ../.;

  # Only what the build and the tests read: Cargo files, Rust sources and TOML, plus the
  # committed copies that tests compare with what the code generates or describes (the
  # OpenAPI document, the configuration table and nix/config-keys.json, the metrics table),
  # nextest's test groups (named here so that they stay in whatever the TOML filter keeps), and
  # the Redis ACL command lists the ACL tests run under (deploy/redis-acl).
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (craneLib.fileset.commonCargoSources root)
      ../docs/openapi.json
      ../docs/configuration.md
      ../docs/operations.md
      ./config-keys.json
      ../.config/nextest.toml
      ../deploy/redis-acl/service.commands
      ../deploy/redis-acl/service-sentinel.commands
    ];
  };

  # Shared by every derivation below, so that they all reuse the same dependency build. No C
  # libraries from nixpkgs: the one C dependency, jemalloc (src/allocator.rs), is built from
  # the source tikv-jemalloc-sys bundles, with the stdenv's cc and make; no TLS; Linux only.
  commonArgs = {
    inherit src;
    strictDeps = true;
  };

  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  package = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      # The integration tests need a redis-server: they run in the nextest check instead.
      doCheck = false;
      # The crates it is made of, embedded in the binary (cargo auditable), for scanners that
      # read the image (`cargo audit bin`, Trivy, Grype); scripts/standin-images builds the same
      # way. pkgsBuildHost: the tool runs on the build machine, also when cross-compiling. The
      # profile is crane's default, release.
      nativeBuildInputs = [ pkgs.pkgsBuildHost.cargo-auditable ];
      cargoBuildCommand = "cargo auditable build --release";
      # Read at compile time by src/version.rs. Kept out of commonArgs: a new revision must not
      # rebuild the dependencies.
      TSAPI_GIT_SHA = gitRevision;
      meta = {
        description = "Named timestamps in Redis, as JSON over HTTP";
        license = lib.licenses.mit;
        mainProgram = "timestamp-api";
        platforms = lib.platforms.linux;
      };
    }
  );
in
{
  inherit
    src
    commonArgs
    cargoArtifacts
    package
    ;
}
