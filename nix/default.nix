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

  # What /version and the build_info metric report; a dirty tree says so.
  gitRevision = self.rev or self.dirtyRev or "unknown";

  crate = import ./package.nix { inherit pkgs craneLib gitRevision; };
  layeredImage = import ./layered-image.nix { inherit pkgs gitRevision; };
  image = import ./image.nix {
    inherit layeredImage;
    inherit (crate) package;
  };
  redis-image = import ./redis-image.nix { inherit pkgs layeredImage; };
in
{
  packages = {
    default = crate.package;
    timestamp-api = crate.package;
    inherit image redis-image;
  };

  checks = import ./checks.nix {
    inherit
      pkgs
      craneLib
      crate
      advisory-db
      ;
    # Image builds need Linux and take a while; one architecture is enough to prove them.
    images = lib.optionalAttrs (system == "x86_64-linux") { inherit image redis-image; };
  };

  apps = import ./apps.nix { inherit pkgs crate; };

  devShells.default = import ./shell.nix {
    inherit pkgs craneLib;
    checks = self.checks.${system} or { };
  };

  formatter = pkgs.nixfmt-tree;
}
