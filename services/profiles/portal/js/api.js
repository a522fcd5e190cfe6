/* The services' APIs, as the signed-in customer.
 *
 * Where each service is comes from /portal/config.json ("" is this origin: profiles).
 * The customer token lives in sessionStorage: this tab only, gone when it closes. Errors
 * arrive as RFC 9457 problem+json and are thrown as ApiError with the problem's fields
 * (`reason` for a refused sign-in link, `errors` for invalid input).
 */

const SESSION_KEY = "rapport.portal.session";

let config = null;
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.reason = problem.reason ?? null;
    this.detail = problem.detail ?? null;
  }
}

/** The service could not be reached at all (down, offline, refused by CORS). */
export class NetworkError extends Error {}

export async function loadConfig() {
  const response = await fetch("/portal/config.json", {
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  if (!response.ok) throw new NetworkError(`config.json: HTTP ${response.status}`);
  config = await response.json();
  return config;
}

/** Called when a service refuses the token (expired): the customer signs in again. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export const session = {
  get() {
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    } catch {
      stored = null;
    }
    if (!stored || !stored.token || !stored.customer_id) return null;
    if (stored.expires_at && stored.expires_at <= Date.now()) {
      this.clear();
      return null;
    }
    return stored;
  },
  save(signedIn) {
    const stored = {
      token: signedIn.access_token,
      customer_id: signedIn.customer_id,
      expires_at: Date.now() + signedIn.expires_in * 1000,
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(stored));
    return stored;
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

function urlOf(service, path, query) {
  const base = config && config.apis ? (config.apis[service] ?? "") : "";
  let url = `${base}/api/v1${path}`;
  if (query) {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
    }
    const text = params.toString();
    if (text) url += `?${text}`;
  }
  return url;
}

/** A request to `service`'s API; resolves to {data, etag} or throws ApiError/NetworkError. */
export async function call(service, path, options = {}) {
  const { method = "GET", body, etag, query, auth = true } = options;
  const headers = { Accept: "application/json" };
  const current = auth ? session.get() : null;
  if (current) headers.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (etag) headers["If-Match"] = etag;
  let response;
  try {
    response = await fetch(urlOf(service, path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    throw new NetworkError(`${service}: ${error.message}`);
  }
  if (!response.ok) {
    let problem = {};
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    if (response.status === 401 && current) {
      session.clear();
      unauthorized();
    }
    throw new ApiError(response.status, problem);
  }
  const data = response.status === 204 ? null : await response.json();
  return { data, etag: response.headers.get("ETag") };
}

export async function get(service, path, query) {
  return (await call(service, path, { query })).data;
}

export async function send(service, method, path, body, options = {}) {
  return (await call(service, path, { ...options, method, body })).data;
}

export const enc = encodeURIComponent;
