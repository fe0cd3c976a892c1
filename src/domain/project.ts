/** A project inside a tenant; API keys may be scoped to one. */
export type Project = {
  readonly id: string;
  readonly tenantId: string;
  /** Unique within the tenant; the same rule as tenant slugs (see slugProblem). */
  readonly slug: string;
  readonly name: string;
  readonly description: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
};

export const PROJECT_DESCRIPTION_MAX = 2000;

/** The fields UpdateProject may change. */
export const PROJECT_UPDATABLE = ["name", "description"] as const;
export type ProjectUpdatable = (typeof PROJECT_UPDATABLE)[number];
