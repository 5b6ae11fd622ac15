# CycloneDX SBOMs (flake outputs sbom, image-sbom, redis-image-sbom), as `make sbom` writes them
# without Nix (tests/supply-chain/sbom): the crate's by cargo cyclonedx, against the vendored
# dependencies crane sets up for every cargo derivation, and each image's read from the image
# archive itself by scripts/sbom. The check sbom-valid validates all three against the CycloneDX
# 1.5 schema and compares them with the dependency list the binary embeds (cargo auditable).
{
  pkgs,
  craneLib,
  crate,
  image,
  redis-image,
}:
let
  inherit (pkgs) lib;
  target = pkgs.stdenv.hostPlatform.rust.rustcTarget;
  imageSbom =
    name: archive:
    pkgs.runCommand "${name}.cdx.json" { nativeBuildInputs = [ pkgs.python3 ]; } ''
      python3 ${../scripts/sbom} image ${archive} >$out
    '';
  sbom = craneLib.mkCargoDerivation (
    crate.commonArgs
    // {
      pname = "timestamp-api-sbom";
      cargoArtifacts = null;
      nativeBuildInputs = [ pkgs.cargo-cyclonedx ];
      buildPhaseCargoCommand = ''
        cargo cyclonedx --format json --spec-version 1.5 --target ${target} \
          --override-filename timestamp-api.cdx
      '';
      installPhaseCommand = ''
        install -D --mode 644 timestamp-api.cdx.json $out
      '';
      doInstallCargoArtifacts = false;
    }
  );
  image-sbom = imageSbom "timestamp-api-image" image;
  redis-image-sbom = imageSbom "timestamp-redis-image" redis-image;
  validator = pkgs.python3.withPackages (
    ps: [ ps.cyclonedx-python-lib ] ++ ps.cyclonedx-python-lib.optional-dependencies.json-validation
  );
in
{
  # For images built elsewhere in the flake (image-aarch64, nix/default.nix).
  inherit imageSbom;
  packages = {
    inherit sbom image-sbom redis-image-sbom;
  };
  checks.sbom-valid =
    pkgs.runCommand "timestamp-api-sbom-valid" { nativeBuildInputs = [ validator ]; }
      ''
        binary=${lib.getExe crate.package}
        python3 ${../scripts/sbom} embedded "$binary" >embedded.json
        python3 ${../tests/supply-chain/validate-sbom} ${sbom} ${image-sbom} ${redis-image-sbom} \
          embedded.json "$binary"
        touch $out
      '';
}
