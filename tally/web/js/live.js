// Live meters: the `usageChanged` subscription over graphql-transport-ws on this origin's
// /graphql (the vendored graphql-ws client), authenticated in connection_init.

import { createClient } from "../vendor/graphql-ws/client.js";
import { graphql } from "./api.js";

export const USAGE_FIELDS = `
  percentUsed
  resetsOn
  resources { key label unit kind used limit planLimit extra percent policy display }
`;

const SUBSCRIPTION = `
  subscription UsageChanged($organizationId: ID) {
    usageChanged(organizationId: $organizationId) {
      usage { ${USAGE_FIELDS} }
      thresholdsCrossed { resource threshold kind crossedAt }
    }
  }
`;

/** True when the server's schema has the `usageChanged` subscription. */
export async function liveUsageAvailable() {
  const data = await graphql("{ __schema { subscriptionType { fields { name } } } }");
  const fields = data.__schema.subscriptionType?.fields ?? [];
  return fields.some((field) => field.name === "usageChanged");
}

/**
 * Subscribes to the organization's usage; calls `onChange({usage, thresholdsCrossed})` for
 * each update and `onClosed(message)` when the server ends it for good. Returns a function
 * that unsubscribes.
 */
export function watchUsage({ key, organizationId, onChange, onClosed }) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const client = createClient({
    url: `${scheme}://${window.location.host}/graphql`,
    connectionParams: { Authorization: `Bearer ${key}` },
    lazy: false,
    retryAttempts: 5,
    shouldRetry: (event) => !(event && typeof event.code === "number" && event.code >= 4400 && event.code < 4500),
  });
  const unsubscribe = client.subscribe(
    { query: SUBSCRIPTION, variables: { organizationId } },
    {
      next: (result) => {
        if (result.data?.usageChanged) onChange(result.data.usageChanged);
        else if (result.errors?.length) onClosed(result.errors[0].message);
      },
      error: (error) => {
        const reason = error?.reason || error?.message || "the connection closed";
        onClosed(`Live updates stopped: ${reason}.`);
      },
      complete: () => {},
    },
  );
  return () => {
    unsubscribe();
    client.dispose();
  };
}
