import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../../src/db/embedded.js";
import { PACKAGE_ROOT } from "../../../src/paths.js";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux we run on). */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export function hasCommand(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Moves every thread of this process (and so its future children) onto one CPU. */
export function pinSelf(cpu: number): void {
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(process.pid)], { stdio: "ignore" });
}

/** User + system CPU time of a process (all its threads), in µs; undefined where /proc is absent. */
export function processCpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS) * 1e6;
  } catch {
    return undefined;
  }
}

/** Resident set size in bytes; undefined where /proc is absent. */
export function processRssBytes(pid: number): number | undefined {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export type BenchProcess = {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  readonly baseUrl: string;
  cpuMicros(): number | undefined;
  rssBytes(): number | undefined;
  /** The last lines the process wrote to stderr, for error messages. */
  stderrTail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
};

export type SpawnOptions = {
  readonly name: string;
  /** A script relative to the package root, e.g. "dist/bin/main.js". */
  readonly script: string;
  readonly args?: readonly string[];
  /** Added to a minimal environment (PATH, HOME); the port comes in as `PORT` and `ADDR`. */
  readonly env?: Readonly<Record<string, string>>;
  readonly cpu: number | undefined;
  /** Polled until it answers 200; default /readyz. */
  readonly readyPath?: string;
  readonly readyTimeoutMs?: number;
};

/**
 * The Node flags of a script's `#!/usr/bin/env -S node …` line: how the installed
 * command runs it (src/main.ts), so the bench measures the server as shipped while
 * still running this Node.
 */
export function shebangNodeFlags(script: string): string[] {
  const first = readFileSync(script, "utf8").split("\n", 1)[0] ?? "";
  const flags = /^#!\/usr\/bin\/env(?: -S)? node(?:\s+(.*))?$/.exec(first)?.[1];
  return flags ? flags.trim().split(/\s+/) : [];
}

/**
 * Every process the bench starts goes through here, so that one call stops them
 * all, whatever happened (an error, Ctrl-C).
 */
export class ProcessRegistry {
  private readonly live = new Set<BenchProcess>();

  async start(options: SpawnOptions): Promise<BenchProcess> {
    const port = await freePort();
    const script = join(PACKAGE_ROOT, options.script);
    const node = [process.execPath, ...shebangNodeFlags(script), script, ...(options.args ?? [])];
    const [command, ...args] = options.cpu === undefined ? node : ["taskset", "-c", String(options.cpu), ...node];
    const child = spawn(command!, args, {
      cwd: PACKAGE_ROOT,
      env: {
        PATH: process.env["PATH"] ?? "",
        HOME: process.env["HOME"] ?? "/tmp",
        ...options.env,
        PORT: String(port),
        ADDR: `127.0.0.1:${port}`,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    const proc = track(options.name, child, port);
    this.live.add(proc);
    const originalStop = proc.stop;
    proc.stop = async (graceMs) => {
      await originalStop(graceMs);
      this.live.delete(proc);
    };
    try {
      await waitForHttp200(`${proc.baseUrl}${options.readyPath ?? "/readyz"}`, options.readyTimeoutMs ?? 60_000, child);
    } catch (error) {
      await proc.stop(0);
      throw new Error(`${options.name} did not become ready: ${(error as Error).message}\n${proc.stderrTail()}`);
    }
    return proc;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.live].map((proc) => proc.stop(2_000)));
  }

  /** Synchronous last resort for process exit: no process outlives the bench. */
  killAllNow(): void {
    for (const proc of this.live) {
      try {
        process.kill(proc.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}

function track(name: string, child: ChildProcess, port: number): BenchProcess {
  let tail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    tail = (tail + chunk).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  const pid = child.pid!;
  return {
    name,
    pid,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    cpuMicros: () => processCpuMicros(pid),
    rssBytes: () => processRssBytes(pid),
    stderrTail: () => tail,
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(graceMs === 0 ? "SIGKILL" : "SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `url` until it answers 200; fails at `timeoutMs`, or at once when `child` exits. */
export async function waitForHttp200(url: string, timeoutMs: number, child?: ChildProcess): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`exited (${child.exitCode ?? child.signalCode}) before ${url} answered`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.status === 200) return performance.now() - started;
    } catch {
      // not listening yet
    }
    if (performance.now() - started > timeoutMs) throw new Error(`no 200 from ${url} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
