import type { TestProject } from "vitest/node";
import { startPostgres } from "./postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    adminDatabaseUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const postgres = await startPostgres();
  console.log(`integration tests use PostgreSQL from ${postgres.kind}`);
  project.provide("adminDatabaseUrl", postgres.adminUrl);
  return async () => postgres.stop();
}
