// The admin API's JSON endpoints, called with the admin key of this browser session.
// No business rule lives here: the API validates, decides and explains; the console shows it.

const KEY = "des-admin-key";

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.detail !== undefined ? body.detail : `HTTP ${status}`;
    super(typeof detail === "string" ? detail : "the request has invalid fields");
    this.status = status;
    this.detail = detail; // a reason, or for 422 a list of {loc, msg, type}
    this.fields = Array.isArray(detail) ? detail : [];
    this.checks = (body && body.checks) || null; // a failed destination check, each step named
  }
}

// In Azure the page is opened as /console/?code=<function key>: that is the key.
export function initialKey() {
  const code = new URLSearchParams(window.location.search).get("code");
  if (code) sessionStorage.setItem(KEY, code);
  return sessionStorage.getItem(KEY);
}

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
}

// The API's root: the console is served at <root>/console/.
export const ROOT = window.location.pathname.replace(/\/console\/?.*$/, "");

function headers(extra) {
  const h = { ...extra };
  const key = getKey();
  if (key) h["x-functions-key"] = key;
  return h;
}

async function request(method, path, { json, accept = "application/json", query, ifMatch } = {}) {
  const url = new URL(ROOT + path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const h = headers({ accept });
  const init = { method, headers: h, credentials: "same-origin" };
  if (json !== undefined) {
    h["content-type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  if (ifMatch) h["if-match"] = ifMatch;
  let r;
  try {
    r = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, { detail: `the admin API did not answer (${e.message})` });
  }
  if (r.status === 401) window.dispatchEvent(new CustomEvent("des:unauthorized"));
  return r;
}

async function body(r) {
  const type = r.headers.get("content-type") || "";
  if (type.startsWith("application/json")) return r.json();
  const text = await r.text();
  return text ? { detail: text } : null;
}

export async function call(method, path, options = {}) {
  const r = await request(method, path, options);
  const data = await body(r);
  if (!r.ok) throw new ApiError(r.status, data);
  return { data, etag: r.headers.get("etag") };
}

export async function get(path, query) {
  return (await call("GET", path, { query })).data;
}

export async function post(path, json, query) {
  return (await call("POST", path, { json, query })).data;
}

// A download (CSV): the API's own bytes, saved under a file name.
export async function download(path, { query, accept, filename }) {
  const r = await request("GET", path, { query, accept });
  if (!r.ok) throw new ApiError(r.status, await body(r));
  const blob = await r.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  return blob.size;
}
