// GraphQL over HTTP POST to this origin's /graphql, with the tab's Bearer key.

import { currentKey } from "./session.js";

/** An answer the page cannot use: a transport failure or GraphQL errors. */
export class ApiError extends Error {
  constructor(message, code = null) {
    super(message);
    this.name = "ApiError";
    this.code = code;
  }
}

/** Runs `query` with `variables`; resolves to `data`, rejects with an ApiError. */
export async function graphql(query, variables = {}) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        Authorization: `Bearer ${currentKey() ?? ""}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError("Tally could not be reached. Check your connection and try again.");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`Tally answered ${response.status} ${response.statusText}.`);
  }
  if (body.errors && body.errors.length > 0) {
    const first = body.errors[0];
    throw new ApiError(first.message, first.extensions?.code ?? null);
  }
  return body.data;
}

/** A fresh idempotency key for one charge (a retry of the same confirmation reuses it). */
export function idempotencyKey(prefix) {
  return `${prefix}-${crypto.randomUUID()}`;
}
