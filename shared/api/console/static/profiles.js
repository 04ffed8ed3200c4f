// The profiles page: state, entities, last sync, failures in the last 24 hours.

import { get } from "./api.js";
import { ago, clear, errorBox, h, num, stateBadge, when } from "./dom.js";

export async function render(ctx) {
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const body = h("div", {});
  clear(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Export profiles"),
      h("div", { class: "buttons" }, h("a", { class: "button", href: "#/new" }, "New profile")),
    ),
    summary,
    body,
  );

  async function load() {
    const [list, service] = await Promise.all([get("/profiles"), get("/metrics")]);
    const rows = await Promise.all(
      list.map(async (p) => {
        const [m, hist] = await Promise.allSettled([
          get(`/profiles/${p.id}/metrics`),
          get(`/profiles/${p.id}/metrics/history`, { minutes: 1440 }),
        ]);
        return { p, m: m.status === "fulfilled" ? m.value : null, hist: hist.status === "fulfilled" ? hist.value : null };
      }),
    );
    const states = Object.entries(service.profiles)
      .map(([k, v]) => `${v} ${k}`)
      .join(", ");
    const unrouted = service.unrouted.reduce((a, e) => a + e.TotalNotifications, 0);
    clear(summary, `${list.length} ${list.length === 1 ? "profile" : "profiles"} (${states}). Notifications no profile took: ${num(unrouted)}.`);
    if (!list.length) {
      clear(body, h("div", { class: "card empty" }, h("p", {}, "No export profiles yet."), h("a", { class: "button", href: "#/new" }, "Create the first profile")));
      return;
    }
    clear(body, table(rows));
  }

  try {
    await load();
  } catch (err) {
    clear(body, errorBox(err));
  }
  ctx.every(15_000, () => load().catch((err) => clear(body, errorBox(err))));
}

function table(rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "profiles" },
      h("caption", { class: "sr-only" }, "Export profiles"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["Name", "State", "Entities", "Last sync", "Failures (24 h)", "Pending retry"].map((c) =>
            h("th", { scope: "col", class: /Fail|Pend/.test(c) ? "num" : "" }, c),
          ),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map(({ p, m, hist }) => {
          const failures24 = hist ? hist.entities.reduce((a, e) => a + e.points.reduce((x, pt) => x + pt.FailureNotifications, 0), 0) : null;
          const names = [...p.entities, ...p.relationships];
          return h(
            "tr",
            {},
            h("th", { scope: "row" }, h("a", { href: `#/profiles/${p.id}` }, p.name)),
            h("td", {}, stateBadge(p.state)),
            h("td", { title: names.join(", ") }, `${names.length}: `, h("span", { class: "muted" }, abbreviate(names))),
            h("td", { title: m && m.lastBatchAt ? when(m.lastBatchAt) : "" }, m ? ago(m.lastBatchAt) : "–"),
            h(
              "td",
              { class: "num" },
              failures24 ? h("a", { href: `#/profiles/${p.id}/failures`, class: "bad" }, num(failures24)) : num(failures24),
            ),
            h("td", { class: "num" }, m ? num(m.pendingRetry) : "–"),
          );
        }),
      ),
    ),
  );
}

function abbreviate(names) {
  if (names.length <= 3) return names.join(", ");
  return `${names.slice(0, 3).join(", ")} and ${names.length - 3} more`;
}
