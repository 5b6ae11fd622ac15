{
  description = "timestamp-api: named timestamps in Redis, as JSON over HTTP";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    crane.url = "github:ipetkov/crane";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
  };

  outputs =
    { self, nixpkgs, ... }@inputs:
    let
      inherit (nixpkgs) lib;
      # The service, its images and its checks are built for Linux; the dev shell also on macOS.
      linuxSystems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      allSystems = linuxSystems ++ [
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      bySystem = lib.genAttrs allSystems (system: import ./nix { inherit inputs system; });
      outputFor = systems: output: lib.genAttrs systems (system: bySystem.${system}.${output});
    in
    {
      packages = outputFor linuxSystems "packages";
      checks = outputFor linuxSystems "checks";
      apps = outputFor linuxSystems "apps";
      devShells = outputFor allSystems "devShells";
      formatter = outputFor allSystems "formatter";

      # services.timestamp-api (docs/nix.md, "NixOS"); its `package` defaults to this flake's.
      nixosModules = {
        default = self.nixosModules.timestamp-api;
        timestamp-api = import ./nix/nixos-module.nix { inherit self; };
      };
    };
}
