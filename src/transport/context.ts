import { createContextKey } from "@connectrpc/connect";

/** The TCP peer of the call, for audit source_ip (the same for every protocol). */
export const peerAddressKey = createContextKey<string | undefined>(undefined, { description: "peer address" });
