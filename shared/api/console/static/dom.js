// Small DOM helpers: elements, formatting, messages, confirmation.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const NUM = new Intl.NumberFormat("en-US");
export const num = (n) => (n === null || n === undefined ? "–" : NUM.format(n));

export function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds === 0) return "0";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

export function toast(message) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("show"), 5000);
}

// The named steps of a destination check (secret, connect, schema, create table, drop table, ...).
export function checksList(checks, caption = "Destination check") {
  return h(
    "section",
    { class: "checks", "aria-label": caption },
    h("h3", {}, caption),
    h(
      "ul",
      {},
      checks.map((c) =>
        h(
          "li",
          { class: c.ok ? "ok" : "bad" },
          h("span", { class: "mark", "aria-hidden": "true" }, c.ok ? "✓" : "✗"),
          h("strong", {}, c.name),
          h("span", { class: "sr-only" }, c.ok ? " passed: " : " failed: "),
          h("span", { class: "detail" }, c.detail),
        ),
      ),
    ),
  );
}

// An API error as the API gave it: the reason, the failing fields, the failed check steps.
export function errorBox(err, title = "The admin API refused") {
  const box = h("div", { class: "alert", role: "alert" });
  const status = err.status ? ` (HTTP ${err.status})` : "";
  box.append(h("strong", {}, title + status + ": "));
  if (err.fields && err.fields.length) {
    box.append("invalid fields");
    box.append(h("ul", {}, err.fields.map((f) => h("li", {}, h("code", {}, fieldPath(f.loc)), " ", f.msg))));
  } else {
    box.append(h("span", { class: "reason" }, String(err.detail ?? err.message)));
  }
  if (err.checks) box.append(checksList(err.checks));
  return box;
}

export function fieldPath(loc) {
  const parts = (loc || []).filter((p) => p !== "body" && p !== "query" && p !== "path");
  return parts.map((p, i) => (typeof p === "number" ? `[${p}]` : (i ? "." : "") + p)).join("") || "body";
}

// A modal confirmation (native <dialog>): resolves true when confirmed.
export function confirmDialog(title, text, confirmLabel, danger = false) {
  return new Promise((resolve) => {
    const dlg = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title" }, title),
      h("p", {}, text),
      h(
        "form",
        { method: "dialog", class: "buttons" },
        h("button", { value: "cancel", type: "submit", class: "secondary" }, "Cancel"),
        h("button", { value: "ok", type: "submit", class: danger ? "danger" : "" }, confirmLabel),
      ),
    );
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "ok");
      dlg.remove();
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function field(label, input, help, id) {
  input.id = id;
  const helpId = help ? `${id}-help` : null;
  if (helpId) input.setAttribute("aria-describedby", `${helpId} ${id}-error`);
  else input.setAttribute("aria-describedby", `${id}-error`);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    help ? h("small", { id: helpId, class: "help" }, help) : null,
    h("small", { id: `${id}-error`, class: "error", "aria-live": "polite" }),
  );
}
