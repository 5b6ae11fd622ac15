# Everything the flake offers for one system. flake.nix only picks the outputs per platform.
{ inputs, system }:
let
  inherit (inputs)
    self
    nixpkgs
    crane
    rust-overlay
    advisory-db
    ;
  pkgs = import nixpkgs {
    inherit system;
    overlays = [ (import rust-overlay) ];
  };
  inherit (pkgs) lib;

  # The toolchain is the one rust-toolchain.toml pins, so that Nix and rustup build with the
  # same compiler (crane docs: "overrideToolchain"; rust-overlay: fromRustupToolchainFile).
  craneLib = (crane.mkLib pkgs).overrideToolchain (
    p: p.rust-bin.fromRustupToolchainFile ../rust-toolchain.toml
  );

  # The dev shell's toolchain: the same channel and components, plus what editors need
  # (rust-src for the standard library's sources, rust-analyzer). Kept out of the builds, so
  # that the checks and packages do not depend on components they never use.
  # rust-overlay's fromRustupToolchain takes the [toolchain] table's keys.
  rustToolchain = (lib.importTOML ../rust-toolchain.toml).toolchain;
  devCraneLib = (crane.mkLib pkgs).overrideToolchain (
    p:
    p.rust-bin.fromRustupToolchain (
      rustToolchain
      // {
        components = rustToolchain.components or [ ] ++ [
          "rust-src"
          "rust-analyzer"
        ];
      }
    )
  );

  # What /version and the build_info metric report; a dirty tree says so.
  gitRevision = self.rev or self.dirtyRev or "unknown";

  crate = import ./package.nix { inherit pkgs craneLib gitRevision; };
  layeredImage = import ./layered-image.nix { inherit pkgs gitRevision; };
  imageTag = import ./image-tag.nix;
  image = import ./image.nix {
    inherit layeredImage;
    inherit (crate) package;
    tag = imageTag;
  };
  image-with-ca-bundle = import ./image.nix {
    inherit layeredImage;
    inherit (crate) package;
    tag = imageTag;
    caBundle = pkgs.cacert;
  };
  redis-image = import ./redis-image.nix {
    inherit pkgs layeredImage;
    tag = imageTag;
  };
  sboms = import ./sbom.nix {
    inherit
      pkgs
      craneLib
      crate
      image
      redis-image
      ;
  };

  # The service's image for aarch64-linux, cross-compiled here (crane's cross-rust-overlay
  # example): nixpkgs with that host platform, the pinned toolchain with its target added (crane
  # sets CARGO_BUILD_TARGET and the linker from the platform), and the same package and image
  # expressions. The release publishes it with the x86_64 one under one multi-arch index.
  aarch64Pkgs = import nixpkgs {
    localSystem = system;
    crossSystem = "aarch64-linux";
    overlays = [ (import rust-overlay) ];
  };
  aarch64CraneLib = (crane.mkLib aarch64Pkgs).overrideToolchain (
    p: p.rust-bin.fromRustupToolchain (rustToolchain // { targets = [ "aarch64-unknown-linux-gnu" ]; })
  );
  image-aarch64 = import ./image.nix {
    layeredImage = import ./layered-image.nix {
      pkgs = aarch64Pkgs;
      inherit gitRevision;
    };
    inherit
      (import ./package.nix {
        pkgs = aarch64Pkgs;
        craneLib = aarch64CraneLib;
        inherit gitRevision;
      })
      package
      ;
    tag = imageTag;
  };
in
{
  packages = {
    default = crate.package;
    timestamp-api = crate.package;
    inherit image image-with-ca-bundle redis-image;
  }
  // sboms.packages
  # On aarch64-linux, `image` is already that platform's.
  // lib.optionalAttrs (system == "x86_64-linux") {
    inherit image-aarch64;
    image-aarch64-sbom = sboms.imageSbom "timestamp-api-image-aarch64" image-aarch64;
  };

  checks =
    import ./checks.nix {
      inherit
        pkgs
        craneLib
        crate
        advisory-db
        ;
    }
    # Image builds need Linux and take a while, and the NixOS test needs a KVM machine
    # (docs/nix.md); one architecture is enough to prove them.
    // lib.optionalAttrs (system == "x86_64-linux") {
      inherit image redis-image;
      inherit (sboms.checks) sbom-valid;
      nixos-module = import ./nixos-test.nix {
        inherit pkgs;
        module = self.nixosModules.default;
      };
    };

  apps = import ./apps.nix { inherit pkgs crate; };

  devShells.default = import ./shell.nix {
    inherit pkgs crate;
    craneLib = devCraneLib;
  };

  formatter = pkgs.nixfmt-tree;
}
