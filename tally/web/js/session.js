// The API key: taken once from the URL fragment (#key=...), kept in this tab's sessionStorage.
// A fragment never reaches a server or its logs; it is cleared from the address bar at once.

const STORAGE_KEY = "tally.apiKey";

/** Moves a `#key=...` fragment into sessionStorage and removes it from the address bar. */
export function adoptKeyFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const key = fragment.get("key");
  if (key) {
    sessionStorage.setItem(STORAGE_KEY, key.trim());
    fragment.delete("key");
    const rest = fragment.toString();
    const url = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
    history.replaceState(history.state, "", url);
  }
}

/** The key this tab signed in with, or null. */
export function currentKey() {
  return sessionStorage.getItem(STORAGE_KEY);
}

/** Keeps `key` for this tab. */
export function signIn(key) {
  sessionStorage.setItem(STORAGE_KEY, key.trim());
}

/** Forgets the key (a revoked or mistyped one). */
export function signOut() {
  sessionStorage.removeItem(STORAGE_KEY);
}
