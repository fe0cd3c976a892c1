import type { BenchSection } from "../harness/context.js";
import { coldStartSection } from "./cold-start.js";
import { auditGrowthSection, tenantGrowthSection } from "./data-growth.js";
import { exportSection } from "./export.js";
import { hotReadsSection } from "./hot-reads.js";
import { propagationSection } from "./propagation.js";

/** Every section of `make bench`, in the order they run. Add yours here. */
export const SECTIONS: readonly BenchSection[] = [
  hotReadsSection,
  propagationSection,
  tenantGrowthSection,
  auditGrowthSection,
  exportSection,
  coldStartSection,
];
