#!/usr/bin/env -S node --max-semi-space-size=16 --max-old-space-size=1024
// The flags size V8's heap for this server instead of for the machine it lands on.
// On a host with plenty of memory Node 24 lets each young-generation semi-space grow
// to 64 MB (Node 20: 16 MB), and with a multi-GB heap limit V8 lets the old generation
// grow to ~4x what survived its last collection before collecting again; a long
// export's steady allocation drives both, ~200 MB of RSS a fresh server never gave
// back (make bench, export). 1 GB of old space is two thirds of the manifests' 1536Mi
// limit: raise both together. This line is how the installed `tenant-registry`
// command (the image's entrypoint) runs; `make start`, `make dev` and the bench read
// the flags from here too. Flags on a command line win over NODE_OPTIONS: to change
// them, run `node <flags> dist/bin/main.js`.
import module from "node:module";
import { ConfigError, loadConfig } from "./config.js";
import { createLogger, createStdoutDestination } from "./logger.js";
import { TRACING_OFF } from "./observability/tracing.js";

// The commands are imported only after tracing has started: the pg
// instrumentation wraps the driver as it loads, and ESM hoists static imports.

const USAGE = `usage: tenant-registry [serve]          serve the API on ADDR (default)
       tenant-registry migrate <up | version | down | down-all | create NAME> [--force]
       tenant-registry dev-token --role <role> [--tenant <slug or id>] [--ttl 1h]   dev only: a token from the dev issuer
       tenant-registry audit <checkpoint | verify> [--tenant ID] [--checkpoint FILE]   sign or verify an audit chain
       tenant-registry audit verify --file EXPORT [--checkpoint FILE] [--public-key FILE]   verify an NDJSON export offline
       tenant-registry preload   load every command's modules and exit (with NODE_COMPILE_CACHE: fill the cache at image build)`;

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
  if (command === "preload") {
    // Run once when the image is built, as the user that runs it (Node keys the cache
    // directory by uid): every start then reads compiled code instead of compiling the
    // bundle's chunks and the packages outside it again. Needs no configuration; loading a
    // module starts nothing.
    await Promise.all([import("./cli/serve.js"), import("./cli/migrate.js"), import("./cli/audit.js"), import("./observability/tracing-sdk.js")]);
    module.flushCompileCache();
    return 0;
  }
  // dev-token is for the dev issuer: KEYCLOAK_ISSUER=dev unless the environment says otherwise.
  const env = command === "dev-token" ? { KEYCLOAK_ISSUER: "dev", ...process.env } : process.env;
  const offline = command === "audit" && args.includes("--file");
  const config = loadConfig(env, offline ? "offline" : command === "migrate" || command === "audit" ? "migrate" : "serve");
  switch (command) {
    case "serve": {
      const tracing =
        config.tracing.endpoint === undefined ? TRACING_OFF : (await import("./observability/tracing-sdk.js")).startTracing(config.tracing);
      const logger = createLogger(config.logLevel, createStdoutDestination(), { traceIds: tracing.tracer !== undefined });
      const { serve } = await import("./cli/serve.js");
      await serve(config, logger, stopSignal(logger), tracing);
      return 0;
    }
    case "migrate": {
      const { runMigrate } = await import("./cli/migrate.js");
      return runMigrate(args, config, { log: (line) => console.log(line), error: (line) => console.error(line) });
    }
    case "audit": {
      const { runAudit } = await import("./cli/audit.js");
      return runAudit(args, config, { log: (line) => console.log(line), error: (line) => console.error(line) });
    }
    case "dev-token": {
      const { runDevToken } = await import("./cli/dev-token.js");
      return runDevToken(args, config, { log: (line) => console.log(line), error: (line) => console.error(line) });
    }
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
    const name = (error as Error)?.name;
    if (error instanceof ConfigError || name === "MigrationError" || name === "StartupError") {
      console.error(`tenant-registry: ${(error as Error).message}`);
    } else {
      console.error("tenant-registry: fatal:", error);
    }
    process.exit(1);
  },
);
