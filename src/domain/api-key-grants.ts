/**
 * What an API key may hand out or act on when it manages keys itself.
 *
 * A key's scopes are literal strings: this service maps a few of them onto its
 * own permissions (permissionsOfScopes), but sibling services trust scopes of
 * their own ("certifai:superuser", …) that mean nothing here. So the only safe
 * rule is literal containment: a key may create, rotate or revoke only keys
 * whose scopes it holds itself, and never mint or obtain one that outranks it.
 * Users (tokens) are not bound by this: a tenant admin manages any key.
 */

/** The scopes of `scopes` that `held` does not include, first-seen order, without duplicates (empty: a subset). */
export function scopesNotHeld(scopes: readonly string[], held: readonly string[]): string[] {
  const holding = new Set(held);
  return [...new Set(scopes)].filter((s) => !holding.has(s));
}

/** The reason, for PermissionDenied, that a key cannot grant `lacking` to a new key (null: it may). */
export function grantDenial(lacking: readonly string[]): string | null {
  return lacking.length === 0 ? null : `an api key cannot grant scopes it does not hold: ${formatScopes(lacking)}`;
}

/**
 * The reason, for PermissionDenied, that a key cannot rotate or revoke a key
 * holding `lacking` (null: it may). A key may always revoke itself.
 */
export function manageDenial(
  action: "rotate" | "revoke",
  target: { readonly id: string },
  lacking: readonly string[],
  callerKeyId: string,
): string | null {
  if (action === "revoke" && target.id === callerKeyId) return null;
  return lacking.length === 0 ? null : `an api key cannot ${action} api key ${target.id}: it lacks the target's scopes ${formatScopes(lacking)}`;
}

const formatScopes = (scopes: readonly string[]) => scopes.map((s) => `"${s}"`).join(", ");
