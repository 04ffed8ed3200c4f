// A profile: its definition, the per-entity status table, activate / deactivate / delete (with
// confirmation), the live destination test with each named check, and the last hour in a chart.

import { call, get, post } from "./api.js";
import { OUTCOME_COLORS, OUTCOME_LABELS, resample, stackedBars } from "./charts.js";
import { ago, checksList, clear, confirmDialog, duration, errorBox, h, num, stateBadge, toast, when } from "./dom.js";

const COLUMNS = [
  ["TotalNotifications", "Total"],
  ["SuccessNotifications", "Succeeded"],
  ["FailureNotifications", "Failed"],
  ["StaleNotifications", "Stale"],
  ["UnprocessableNotifications", "Unprocessable"],
  ["SkippedNotifications", "Skipped"],
];

export async function render(ctx, id) {
  const { data: p } = await call("GET", `/profiles/${id}`);
  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  const status = h("div", {});
  const chart = h("div", { class: "chart-slot" });
  const stamp = h("p", { class: "muted small" });

  const actions = h("div", { class: "buttons actions" });
  const busy = async (button, work) => {
    const buttons = actions.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    button.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (err) {
      clear(outcome, errorBox(err));
    } finally {
      button.removeAttribute("aria-busy");
      buttons.forEach((b) => (b.disabled = false));
    }
  };

  const test = h("button", { type: "button", class: "secondary" }, "Test destination");
  test.addEventListener("click", () =>
    busy(test, async () => {
      clear(outcome, h("p", { class: "muted" }, "Checking the destination live (secret, connect, schema, create and drop a table)…"));
      const r = await get(`/profiles/${id}/test`);
      clear(outcome, checksList(r.checks, r.valid ? "Destination test: passed" : "Destination test: failed"));
    }),
  );
  const toggle =
    p.state === "active"
      ? h("button", { type: "button", class: "secondary" }, "Deactivate")
      : h("button", { type: "button" }, "Activate");
  toggle.addEventListener("click", () =>
    busy(toggle, async () => {
      if (p.state === "active") {
        const ok = await confirmDialog(
          `Deactivate “${p.name}”?`,
          "Notifications for its entities are then completed without applying them and counted as skipped. Nothing is dropped from the destination.",
          "Deactivate",
        );
        if (!ok) return;
        await post(`/profiles/${id}/deactivate`);
        toast(`“${p.name}” deactivated`);
      } else {
        const ok = await confirmDialog(
          `Activate “${p.name}”?`,
          "The destination is checked live first; then notifications for its entities are applied to it.",
          "Activate",
        );
        if (!ok) return;
        clear(outcome, h("p", { class: "muted" }, "Checking the destination and activating…"));
        await post(`/profiles/${id}/activate`);
        toast(`“${p.name}” activated`);
      }
      ctx.go(`/profiles/${id}`);
    }),
  );
  const del = h("button", { type: "button", class: "danger" }, "Delete");
  del.addEventListener("click", () =>
    busy(del, async () => {
      const ok = await confirmDialog(
        `Delete “${p.name}”?`,
        "The profile, its metrics, failure logs and parked notifications are deleted. The destination's tables are kept.",
        "Delete profile",
        true,
      );
      if (!ok) return;
      const r = (await call("DELETE", `/profiles/${id}`)).data;
      toast(`“${p.name}” deleted (${r.blobsDeleted} blobs removed)`);
      ctx.go("/");
    }),
  );
  actions.append(
    h("a", { class: "button secondary", href: `#/profiles/${id}/edit` }, "Edit"),
    toggle,
    test,
    h("a", { class: "button secondary", href: `#/profiles/${id}/failures` }, "Failures"),
    h("a", { class: "button secondary", href: `#/profiles/${id}/charts` }, "Charts"),
    del,
  );

  clear(
    ctx.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Profiles"), " / "),
    h("div", { class: "page-head" }, h("h1", {}, p.name), stateBadge(p.state)),
    actions,
    outcome,
    h("h2", {}, "Status per entity"),
    stamp,
    status,
    chart,
    h("h2", {}, "Settings"),
    definition(p),
  );

  async function load() {
    const [m, hist] = await Promise.all([get(`/profiles/${id}/metrics`), get(`/profiles/${id}/metrics/history`, { minutes: 60 })]);
    clear(stamp, `Last batch ${ago(m.lastBatchAt)}; pending retry: ${num(m.pendingRetry)}. Updated ${new Date().toLocaleTimeString("en-GB")}, every 5 s.`);
    clear(status, statusTable(p, m));
    const width = Math.max(280, chart.clientWidth || ctx.main.clientWidth || 800);
    const { times, step, entities } = resample(hist, 60);
    const series = Object.keys(OUTCOME_COLORS).map((k) => ({
      label: OUTCOME_LABELS[k],
      color: OUTCOME_COLORS[k],
      values: times.map((_, i) => Object.values(entities).reduce((a, rows) => a + rows[i][k], 0)),
    }));
    clear(chart, stackedBars({ id: "last-hour", title: "Notifications per minute, last hour", width, height: 180, times, series, perMinute: step, unit: "per minute" }));
  }
  try {
    await load();
  } catch (err) {
    clear(status, errorBox(err));
  }
  ctx.every(5_000, () => load().catch((err) => clear(status, errorBox(err))));
}

function definition(p) {
  const rows = [
    ["Id", h("code", {}, p.id)],
    ["Organization", h("code", {}, p.organizationId)],
    ["Destination", `${p.destination} (${p.destinationKind === "keyVault" ? "Key Vault secret" : "connection string, development"})`],
    ["Schema", p.schema ?? "database default"],
    ["Prefix", p.prefix || "none"],
    ["Retries", `${p.retryCount} × every ${p.retryIntervalSeconds} s`],
    ["Delete log", p.writeDeleteLog ? "kept" : "not kept"],
    ["Entities", p.entities.join(", ") || "none"],
    ["N:N relationships", p.relationships.join(", ") || "none"],
    ["Revision", `${p.revision}, updated ${when(p.updatedAt)}`],
  ];
  return h("dl", { class: "definition" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function statusTable(p, m) {
  const byName = new Map(m.entities.map((e) => [e.entity, e]));
  const names = [...new Set([...p.entities, ...p.relationships, ...m.entities.map((e) => e.entity)])];
  const row = (name) => {
    const e = byName.get(name);
    if (!e) {
      return h(
        "tr",
        {},
        h("th", { scope: "row" }, name),
        COLUMNS.map(() => h("td", { class: "num" }, "0")),
        h("td", {}, "never"),
        h("td", {}, "–"),
        h("td", {}, "NotStarted"),
        h("td", { class: "num" }, "–"),
      );
    }
    return h(
      "tr",
      { "data-entity": name },
      h("th", { scope: "row" }, name),
      COLUMNS.map(([k]) => h("td", { class: `num ${k === "FailureNotifications" && e[k] ? "bad" : ""}`, "data-col": k }, num(e[k]))),
      h("td", { title: when(e.LastExportDate) }, ago(e.LastExportDate)),
      h("td", {}, e.LastExportStatus ? h("span", { class: `badge status-${e.LastExportStatus}` }, e.LastExportStatus) : "–"),
      h("td", {}, e.InitialSyncState),
      h("td", { class: "num" }, duration(e.lagSeconds)),
    );
  };
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "status" },
      h("caption", { class: "sr-only" }, "Notifications per entity"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Entity"),
          COLUMNS.map(([, label]) => h("th", { scope: "col", class: "num" }, label)),
          h("th", { scope: "col" }, "Last sync"),
          h("th", { scope: "col" }, "Last status"),
          h("th", { scope: "col" }, "Initial sync"),
          h("th", { scope: "col", class: "num" }, "Lag"),
        ),
      ),
      h("tbody", {}, names.map(row)),
      h(
        "tfoot",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "row" }, "All"),
          COLUMNS.map(([k]) => h("td", { class: "num", "data-col": k }, num(m.totals[k]))),
          h("td", { colspan: 4 }),
        ),
      ),
    ),
  );
}
