// Talking to the CIM server: JSON in and out, errors as messages a person can read, and a watch on the server's
// health so the page can say "the server is down" and recover when it is back.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

const listeners = new Set();
let serverUp = true;

/** Call fn(up) whenever the server goes away or comes back. */
export function onServerChange(fn) {
  listeners.add(fn);
}

function setServerUp(up) {
  if (up === serverUp) return;
  serverUp = up;
  for (const fn of listeners) fn(up);
  if (!up) watchUntilBack();
}

async function watchUntilBack() {
  // A cheap request that every CIM server answers; retried until it does.
  while (!serverUp) {
    await new Promise((resolve) => setTimeout(resolve, 3000));
    try {
      const r = await fetch("/conformance", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (r.ok) setServerUp(true);
    } catch {
      /* still down */
    }
  }
}

async function request(path, init) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: { Accept: "application/json", ...(init?.headers ?? {}) } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    setServerUp(false);
    throw new ApiError("the server does not answer", 0);
  }
  setServerUp(true);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      // The server's errors read {"description": "<what> — <why>"}; FastAPI's own use "detail".
      message = body.description ?? body.detail ?? message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(message, response.status);
  }
  return response.json();
}

export function getJSON(path, { signal } = {}) {
  return request(path, { signal });
}

export function postJSON(path, body, { signal } = {}) {
  return request(path, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" },
    signal,
  });
}

/** Build a query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
