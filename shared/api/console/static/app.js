// The console's shell: sign-in with the admin key (once per browser session), the router, the nav.

import { ApiError, clearKey, get, getKey, initialKey, setKey } from "./api.js";
import { clear, errorBox, field, h } from "./dom.js";
import * as failures from "./failures.js";
import * as form from "./form.js";
import * as metrics from "./metrics.js";
import * as profile from "./profile.js";
import * as profiles from "./profiles.js";

const main = document.getElementById("main");
const signout = document.getElementById("signout");
let cleanup = null;

const ROUTES = [
  [/^\/?$/, (ctx) => profiles.render(ctx), "profiles"],
  [/^\/new$/, (ctx) => form.render(ctx, null), "new"],
  [/^\/profiles\/([0-9a-f-]{36})$/, (ctx, id) => profile.render(ctx, id), "profiles"],
  [/^\/profiles\/([0-9a-f-]{36})\/edit$/, (ctx, id) => form.render(ctx, id), "profiles"],
  [/^\/profiles\/([0-9a-f-]{36})\/failures$/, (ctx, id) => failures.render(ctx, id), "profiles"],
  [/^\/profiles\/([0-9a-f-]{36})\/charts$/, (ctx, id) => metrics.render(ctx, id), "profiles"],
];

export function go(path) {
  if (window.location.hash === `#${path}`) route();
  else window.location.hash = path;
}

function setNav(active) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!getKey()) {
    signin();
    return;
  }
  signout.hidden = false;
  const path = decodeURIComponent(window.location.hash.replace(/^#/, "")).toLowerCase();
  for (const [re, view, nav] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    setNav(nav);
    const timers = [];
    const leaves = [];
    const ctx = {
      main,
      go,
      every(ms, fn) {
        timers.push(setInterval(() => document.visibilityState === "visible" && fn(), ms));
      },
      onLeave(fn) {
        leaves.push(fn);
      },
    };
    cleanup = () => {
      timers.forEach(clearInterval);
      leaves.forEach((fn) => fn());
    };
    clear(main);
    try {
      await view(ctx, m[1]);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        clearKey();
        signin(err);
        return;
      }
      clear(main, h("h1", {}, "Something went wrong"), errorBox(err instanceof ApiError ? err : new ApiError(0, { detail: String(err) })));
    }
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
      document.title = `${heading.textContent} · DES console`;
    }
    return;
  }
  setNav(null);
  clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the profiles")));
}

function signin(reason) {
  signout.hidden = true;
  setNav(null);
  document.title = "Sign in · DES console";
  const input = h("input", { type: "password", name: "key", autocomplete: "current-password", required: true, spellcheck: "false" });
  const status = h("div", { "aria-live": "polite" });
  const formEl = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h(
      "p",
      {},
      "Enter the admin key of this app (DES_ADMIN_API_KEY; in Azure a function key). ",
      "It is kept for this browser tab's session only and sent as the API's x-functions-key header.",
    ),
    field("Admin key", input, null, "signin-key"),
    status,
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Sign in")),
  );
  if (reason) status.append(errorBox(reason, "Not signed in"));
  formEl.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setKey(input.value.trim());
    clear(status, h("p", { class: "muted" }, "Checking the key…"));
    try {
      await get("/profiles");
    } catch (err) {
      clearKey();
      clear(status, errorBox(err, "Not signed in"));
      input.focus();
      return;
    }
    route();
  });
  clear(main, formEl);
  input.focus();
}

window.addEventListener("des:unauthorized", () => {
  clearKey();
});
signout.addEventListener("click", () => {
  clearKey();
  window.location.hash = "/";
  signin();
});
window.addEventListener("hashchange", route);
initialKey();
route();
