// Who the page calls as: with API keys on the server, the key the user typed, kept for this tab
// only (sessionStorage), goes as a bearer token on every call the page makes, its event streams
// included. Result images need no key: their URLs are signed.
const STORE = 'kiln.apiKey';

export function apiKey() {
  try { return sessionStorage.getItem(STORE) || ''; } catch { return ''; }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(STORE, key);
    else sessionStorage.removeItem(STORE);
  } catch { /* storage refused: the key lasts until the page is left */ }
}

// `headers` with Authorization added when a key is set.
export function authHeaders(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : { ...headers };
}
