import type { BenchSection } from "../harness/context.js";
import { auditWritesSection } from "./audit-writes.js";
import { clientCacheSection } from "./client-cache.js";
import { coldStartSection } from "./cold-start.js";
import { auditGrowthSection, tenantGrowthSection } from "./data-growth.js";
import { exportSection } from "./export.js";
import { hotReadsSection } from "./hot-reads.js";
import { keyCacheMemorySection } from "./key-cache-memory.js";
import { propagationSection } from "./propagation.js";
import { rapidResetSection } from "./rapid-reset.js";

/** Every section of `make bench`, in the order they run. Add yours here. */
export const SECTIONS: readonly BenchSection[] = [
  hotReadsSection,
  keyCacheMemorySection,
  propagationSection,
  tenantGrowthSection,
  auditGrowthSection,
  exportSection,
  auditWritesSection,
  clientCacheSection,
  coldStartSection,
  rapidResetSection,
];
