# `nix flake check`: the shape of crane's quick-start checks, plus the Nix linters (the images
# and the NixOS VM test are added in nix/default.nix, on x86_64-linux). Every Rust check reuses
# the one dependency build (`cargoArtifacts`); none keeps a target directory as its output.
{
  pkgs,
  craneLib,
  crate,
  advisory-db,
}:
let
  inherit (pkgs) lib;
  inherit (crate) src commonArgs cargoArtifacts;

  nixFiles = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ../.;
  };
in
{
  timestamp-api = crate.package;

  clippy = craneLib.cargoClippy (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoClippyExtraArgs = "--all-targets -- --deny warnings";
      # mkCargoDerivation installs cargo's target directory by default; nothing builds on it.
      doInstallCargoArtifacts = false;
    }
  );

  doc = craneLib.cargoDoc (
    commonArgs
    // {
      inherit cargoArtifacts;
      env.RUSTDOCFLAGS = "--deny warnings";
    }
  );

  fmt = craneLib.cargoFmt { inherit src; };

  toml-fmt = craneLib.taploFmt {
    src = lib.sources.sourceFilesBySuffices src [ ".toml" ];
  };

  audit = craneLib.cargoAudit { inherit src advisory-db; };

  # Licenses, bans and sources, as deny.toml says; advisories are the audit check's job.
  deny = craneLib.cargoDeny { inherit src; };

  # Unit and integration tests. The integration harness starts its own redis-servers on
  # ephemeral loopback ports in temporary directories, inside the build sandbox (the pattern
  # of crane's end-to-end-testing example); it finds the server through REDIS_SERVER_BIN.
  nextest = craneLib.cargoNextest (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoExtraArgs = "--locked";
      partitions = 1;
      partitionType = "count";
      nativeCheckInputs = [ pkgs.redis ];
      REDIS_SERVER_BIN = lib.getExe' pkgs.redis "redis-server";
      # nextest runs a test per core while clippy, doc and the images build beside it: every
      # time bound in the tests is the configured time plus this slack
      # (tests/api/harness/timing.rs).
      TSAPI_TEST_SLACK = "5s";
      # cargoNextest passes this on to mkCargoDerivation, whose default (true) would keep the
      # whole target directory as the output; nothing consumes it.
      doInstallCargoArtifacts = false;
    }
  );

  nix-lint =
    pkgs.runCommand "timestamp-api-nix-lint"
      {
        nativeBuildInputs = [
          pkgs.nixfmt
          pkgs.deadnix
          pkgs.statix
        ];
      }
      ''
        cd ${nixFiles}
        nixfmt --check $(find . -name '*.nix')
        deadnix --fail .
        statix check .
        touch $out
      '';
}
