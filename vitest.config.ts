import { defineConfig } from "vitest/config";

// Two projects: `unit` needs nothing but Node; `integration` gets one PostgreSQL
// for the whole run (global setup) and a fresh database per test file.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/db/**/*.test.ts", "test/rpc/**/*.test.ts", "test/auth/**/*.test.ts", "test/e2e/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
