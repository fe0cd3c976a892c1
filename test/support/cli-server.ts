import { spawn, type SpawnOptions } from "node:child_process";

export type CliServer = {
  /** The spawned process (the server itself when the command execs into it, as setpriv and env do). */
  readonly pid: number;
  readonly port: number;
  readonly baseUrl: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Its JSON log lines (stdout), parsed. */
  logs(): Record<string, unknown>[];
  /** SIGTERM, then the exit code once it has drained. */
  stop(): Promise<number | null>;
};

/**
 * Runs `tenant-registry serve` as its own process, the way a container does,
 * and waits for its "serving on" line (ADDR should end in :0; the OS picks).
 */
export async function startCliServer(
  command: readonly string[],
  env: Record<string, string>,
  options: Pick<SpawnOptions, "cwd" | "uid" | "gid"> = {},
): Promise<CliServer> {
  const [file, ...args] = command;
  const child = spawn(file!, args, { ...options, env: { PATH: process.env["PATH"] ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let stdout = "";
  child.stdout!.on("data", (chunk) => {
    out += String(chunk);
    stdout += String(chunk);
  });
  child.stderr!.on("data", (chunk) => (out += String(chunk)));
  // "close", not "exit": stdout may still hold what the process wrote as it exited.
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start:\n${out}`));
    }, 30_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before serving:\n${out}`));
    });
    child.stdout!.on("data", () => {
      const match = /"msg":"serving on [^"]*:(\d+)"/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
  });
  return {
    pid: child.pid!,
    port,
    baseUrl: `http://127.0.0.1:${port}`,
    output: () => out,
    logs: () =>
      stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      return exited;
    },
  };
}
