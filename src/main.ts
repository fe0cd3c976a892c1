#!/usr/bin/env node
import { runMigrate } from "./cli/migrate.js";
import { serve } from "./cli/serve.js";
import { ConfigError, loadConfig } from "./config.js";
import { MigrationError } from "./db/migrations.js";
import { createLogger } from "./logger.js";

const USAGE = `usage: tenant-registry [serve]          serve the API on ADDR (default)
       tenant-registry migrate <up | version | down | down-all | create NAME> [--force]`;

/** The only place that reads process.argv and process.env. */
async function main(argv: readonly string[]): Promise<number> {
  const nodeMajor = Number(process.versions.node.split(".")[0]);
  if (nodeMajor < 24) {
    console.error(`tenant-registry needs Node.js >= 24, this is ${process.version} (\`make\` installs the pinned version)`);
    return 1;
  }
  const [command = "serve", ...args] = argv;
  if (command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return 0;
  }
  const config = loadConfig(process.env, command === "migrate" ? "migrate" : "serve");
  switch (command) {
    case "serve": {
      const logger = createLogger(config.logLevel);
      await serve(config, logger, stopSignal(logger));
      return 0;
    }
    case "migrate":
      return runMigrate(args, config, { log: (line) => console.log(line), error: (line) => console.error(line) });
    default:
      console.error(USAGE);
      return 2;
  }
}

/** Resolves on the first SIGTERM/SIGINT; a second one exits at once. */
function stopSignal(logger: { warn(msg: string): void }): Promise<string> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: string) => {
      if (received) {
        logger.warn(`second ${signal}: exiting without draining`);
        process.exit(130);
      }
      received = true;
      resolve(signal);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof ConfigError || error instanceof MigrationError || (error as Error)?.name === "StartupError") {
      console.error(`tenant-registry: ${(error as Error).message}`);
    } else {
      console.error("tenant-registry: fatal:", error);
    }
    process.exit(1);
  },
);
