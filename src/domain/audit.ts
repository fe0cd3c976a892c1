/** Who performed a change, in the Retraced actor shape. */
export type Actor =
  | { readonly kind: "anonymous" }
  | { readonly kind: "user" | "service" | "api_key" | "system"; readonly id: string; readonly name: string; readonly href?: string };

export const ANONYMOUS: Actor = { kind: "anonymous" };

/** The request-level facts every audit event of a call carries. */
export type AuditContext = {
  readonly actor: Actor;
  readonly sourceIp: string | undefined;
  /** Told how many events were committed (metrics); absent outside a call. */
  readonly written?: (count: number) => void;
};

export type Crud = "c" | "r" | "u" | "d";

/** What a mutation reports about itself; the actor and source come from the call. */
export type AuditEventDraft = {
  /** The tenant the event belongs to (Retraced: group); null for platform-level events. */
  readonly tenantId: string | null;
  /** Dotted verb: "tenant.create", "api_key.revoke". */
  readonly action: string;
  readonly crud: Crud;
  readonly target: { readonly id: string; readonly name?: string; readonly type: string };
  readonly description?: string;
  /** Changed fields and other details. Never secrets, hashes or tokens. */
  readonly fields?: Readonly<Record<string, unknown>>;
  readonly isFailure?: boolean;
};
