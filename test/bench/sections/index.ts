import type { BenchSection } from "../harness/context.js";
import { hotReadsSection } from "./hot-reads.js";

/** Every section of `make bench`, in the order they run. Add yours here. */
export const SECTIONS: readonly BenchSection[] = [hotReadsSection];
