# The tag both images are loaded under (`docker load` prints `timestamp-api:<tag>` and
# `timestamp-redis:<tag>`): the crate's version, from Cargo.toml. It is something this
# repository controls, so compose.yaml, .env.example and the kustomizations can name it before
# anything is built, whatever Redis the nixpkgs pin holds; what is inside an image (the exact
# Redis version, the git revision) is in its labels. Plain Nix without nixpkgs, so that
# .ci/check-image-tags can evaluate it with `nix-instantiate --eval` where nixpkgs is out of
# reach. docs/nix.md, "Image tags", says why development builds carry the same tag.
(builtins.fromTOML (builtins.readFile ../Cargo.toml)).package.version
