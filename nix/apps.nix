# `nix run` starts the service; `nix run .#up` runs it with a private redis-server, exactly as
# `make up` does (the same script, with the Nix-built binary instead of `cargo run`).
{
  pkgs,
  crate,
}:
let
  inherit (pkgs) lib;
  up = pkgs.writeShellApplication {
    name = "timestamp-api-up";
    runtimeInputs = [
      pkgs.redis
      pkgs.coreutils
    ];
    text = ''
      exec ${lib.getExe pkgs.bash} ${../scripts/up} ${lib.getExe crate.package} serve
    '';
  };
in
{
  default = {
    type = "app";
    program = lib.getExe crate.package;
    meta.description = "Serve the API (configure with TSAPI_* variables)";
  };
  up = {
    type = "app";
    program = lib.getExe up;
    meta.description = "Serve the API with a private redis-server; Ctrl-C stops both";
  };
}
