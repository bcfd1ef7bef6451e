#!/usr/bin/env node
// Compile the devnet contracts with the pinned npm `solc` and write deterministic artifacts.
//
//   node devnet/contracts/compile.mjs          write devnet/contracts/build/<ContractName>.json
//   node devnet/contracts/compile.mjs --check  compile in memory; exit 1 if any artifact is stale or missing
//
// An artifact is {"contractName", "abi", "bytecode", "compiler": {"version", "evmVersion", "optimizer"}},
// pretty-printed with two spaces and a trailing newline.

import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const CONTRACTS_DIR = dirname(fileURLToPath(import.meta.url));
const BUILD_DIR = join(CONTRACTS_DIR, "build");
const SOLC_VERSION = "0.8.37";
const EVM_VERSION = "cancun";
const OPTIMIZER = { enabled: true, runs: 200 };
// Only the deployable contracts get artifacts (BN254 is an internal library).
const DEPLOYABLE = [
  ["OperatorRegistry.sol", "OperatorRegistry"],
  ["AlignedServiceManager.sol", "AlignedServiceManager"],
  ["OperatorStateRetriever.sol", "OperatorStateRetriever"],
  ["LoadBatcher.sol", "LoadBatcher"],
];

function fail(message, code = 1) {
  process.stderr.write(`compile.mjs: ${message}\n`);
  process.exit(code);
}

function compile() {
  if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
    fail(`expected solc ${SOLC_VERSION}, found ${solc.version()}: run \`npm ci\``, 2);
  }
  const sources = {};
  for (const name of readdirSync(CONTRACTS_DIR).filter((f) => f.endsWith(".sol")).sort()) {
    sources[name] = { content: readFileSync(join(CONTRACTS_DIR, name), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
    },
  };
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), {
      import: (path) => ({ error: `imports outside devnet/contracts are not allowed: ${path}` }),
    }),
  );
  const diagnostics = output.errors || [];
  for (const d of diagnostics) {
    process.stderr.write(`${d.formattedMessage || d.message}\n`);
  }
  if (diagnostics.some((d) => d.severity === "error")) {
    fail("compilation failed", 2);
  }
  const artifacts = new Map();
  for (const [file, contractName] of DEPLOYABLE) {
    const contract = output.contracts?.[file]?.[contractName];
    if (!contract) fail(`${file} did not produce contract ${contractName}`, 2);
    const artifact = {
      contractName,
      abi: contract.abi,
      bytecode: `0x${contract.evm.bytecode.object}`,
      compiler: {
        version: solc.version(),
        evmVersion: EVM_VERSION,
        optimizer: { enabled: OPTIMIZER.enabled, runs: OPTIMIZER.runs },
      },
    };
    artifacts.set(`${contractName}.json`, `${JSON.stringify(artifact, null, 2)}\n`);
  }
  return artifacts;
}

function main() {
  const args = process.argv.slice(2);
  const check = args.includes("--check");
  const unknown = args.filter((a) => a !== "--check");
  if (unknown.length) fail(`unknown arguments: ${unknown.join(" ")}`, 2);

  const artifacts = compile();
  const shown = (name) => relative(process.cwd(), join(BUILD_DIR, name)) || join(BUILD_DIR, name);

  if (check) {
    const problems = [];
    for (const [name, text] of artifacts) {
      const path = join(BUILD_DIR, name);
      if (!existsSync(path)) {
        problems.push(`missing artifact ${shown(name)}`);
      } else if (readFileSync(path, "utf8") !== text) {
        problems.push(`stale artifact ${shown(name)}`);
      }
    }
    const extra = existsSync(BUILD_DIR)
      ? readdirSync(BUILD_DIR).filter((f) => f.endsWith(".json") && !artifacts.has(f))
      : [];
    for (const name of extra.sort()) problems.push(`unexpected artifact ${shown(name)}`);
    if (problems.length) {
      fail(
        `${problems.join("; ")}: the Solidity sources changed since the artifacts were built; ` +
          "run `node devnet/contracts/compile.mjs` and commit devnet/contracts/build/",
      );
    }
    process.stdout.write(`contract artifacts are up to date (${[...artifacts.keys()].join(", ")})\n`);
    return;
  }

  mkdirSync(BUILD_DIR, { recursive: true });
  for (const [name, text] of artifacts) {
    const path = join(BUILD_DIR, name);
    if (existsSync(path) && readFileSync(path, "utf8") === text) continue;
    writeFileSync(path, text);
    process.stdout.write(`wrote ${shown(name)}\n`);
  }
}

main();
