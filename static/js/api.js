// The API client: same origin, the token kept in sessionStorage, every failure an
// ApiError carrying the server's `error` message.

const KEY = "autoscaler.token";

export const session = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set(token) {
    sessionStorage.setItem(KEY, token);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Calls the API; resolves to the parsed body, rejects with an ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached; check the connection and retry.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message =
      data && typeof data.error === "string" ? data.error : `The server answered ${response.status}.`;
    if (response.status === 401 && token && !path.startsWith("/api/auth/login")) {
      session.clear();
      window.dispatchEvent(new CustomEvent("signedout", { detail: message }));
    }
    throw new ApiError(response.status, message);
  }
  return data;
}

/** Path segment for an instance id (ids are path-safe, but never trust that). */
export const seg = (id) => encodeURIComponent(id);
