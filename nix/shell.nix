# `nix develop`: the pinned toolchain plus every input of the checks, and the tools the
# Makefile (`make lint` included), the deployment tests and the benchmark call.
{
  pkgs,
  craneLib,
  checks,
}:
craneLib.devShell {
  inherit checks;
  packages = with pkgs; [
    redis
    cargo-nextest
    cargo-deny
    cargo-audit
    taplo
    nixfmt
    deadnix
    statix
    docker-compose
    kubectl
    yamllint
    shellcheck
    actionlint
    prometheus # promtool
    python3
    wrk
    curl
  ];
}
