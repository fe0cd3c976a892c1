import type { Actor } from "../domain/audit.js";

export const ROLES = ["platform-admin", "service", "tenant-admin", "tenant-viewer"] as const;
export type Role = (typeof ROLES)[number];

/** A verified caller. */
export type Principal = {
  readonly kind: "user" | "service" | "api_key";
  /** Token subject, or the API key's id. */
  readonly id: string;
  readonly name: string;
  readonly roles: readonly Role[];
  /** Set for tenant-scoped principals (tenant-admin/-viewer tokens, API keys). */
  readonly tenantId?: string;
  /** API keys: their scopes, which narrow what their tenant role allows. */
  readonly scopes?: readonly string[];
};

/** Every call in AUTH_MODE=none runs as this (dev only). */
export const DEV_PLATFORM_ADMIN: Principal = {
  kind: "user",
  id: "dev",
  name: "dev platform admin (AUTH_MODE=none)",
  roles: ["platform-admin"],
};

export function actorOf(principal: Principal): Actor {
  return { kind: principal.kind, id: principal.id, name: principal.name };
}
