# `nix develop`: the toolchain rust-toolchain.toml pins, with rust-src and rust-analyzer for
# editors (nix/default.nix), the crate's build inputs, and the tools the Makefile (`make lint`
# included), the deployment tests and the benchmark call. No check, image or Redis override is
# an input, so entering the shell builds none of them.
{
  pkgs,
  craneLib,
  crate,
}:
craneLib.devShell {
  # The crate's own inputs (its build toolchain and crane's setup hooks, which only run in a
  # build's phases); crane's devShell lists its toolchain first, so `cargo`, `rustc` and
  # rust-analyzer come from the one with rust-src.
  inputsFrom = [ crate.package ];
  # The packages build for Linux only; on macOS, cargo links against libiconv.
  buildInputs = pkgs.lib.optionals pkgs.stdenv.hostPlatform.isDarwin [ pkgs.libiconv ];
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
    prometheus.cli # promtool alone: nixpkgs' prometheus moves it to the `cli` output
    # PyYAML: deploy/observability/check-dashboard reads the alert rules with it.
    (python3.withPackages (ps: [ ps.pyyaml ]))
    wrk
    curl
  ];
}
