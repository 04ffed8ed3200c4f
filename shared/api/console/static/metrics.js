// Charts of a profile over the last hours, from GET /profiles/{id}/metrics/history: notifications
// per minute by outcome, failures per entity, lag per entity.

import { get } from "./api.js";
import { OUTCOME_COLORS, OUTCOME_LABELS, entityColor, lines, resample, stackedBars } from "./charts.js";
import { clear, duration, errorBox, field, h } from "./dom.js";

const WINDOWS = [
  [60, "Last hour"],
  [180, "Last 3 hours"],
  [360, "Last 6 hours"],
  [720, "Last 12 hours"],
  [1440, "Last 24 hours"],
  [4320, "Last 3 days"],
  [10080, "Last 7 days"],
];

export async function render(ctx, id) {
  const p = await get(`/profiles/${id}`);
  const windowSel = h("select", {}, WINDOWS.map(([m, label]) => h("option", { value: m, selected: m === 180 }, label)));
  const entitySel = h(
    "select",
    {},
    h("option", { value: "" }, "All entities"),
    [...p.entities, ...p.relationships].map((e) => h("option", { value: e }, e)),
  );
  const note = h("p", { class: "muted small", "aria-live": "polite" });
  const charts = h("div", { class: "charts" });
  clear(
    ctx.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Profiles"), " / ", h("a", { href: `#/profiles/${id}` }, p.name), " / "),
    h("h1", {}, `Charts of “${p.name}”`),
    h("form", { class: "card filters", "aria-label": "Chart options" }, h("div", { class: "row" }, field("Time window", windowSel, null, "c-window"), field("Entity", entitySel, null, "c-entity"))),
    note,
    charts,
  );

  async function load() {
    const minutes = Number(windowSel.value);
    let hist;
    try {
      hist = await get(`/profiles/${id}/metrics/history`, { minutes, entity: entitySel.value });
    } catch (err) {
      clear(charts, errorBox(err));
      return;
    }
    const { times, step, entities } = resample(hist, minutes);
    const names = Object.keys(entities).sort();
    const width = Math.max(280, charts.clientWidth || 800);
    const per = step === 1 ? "per minute" : `per minute (average of ${step}-minute intervals)`;
    clear(note, `${new Date(hist.start).toLocaleString("en-GB")} – ${new Date(hist.end).toLocaleString("en-GB")}; ${per}. Updated every 30 s.`);
    const outcomes = Object.keys(OUTCOME_COLORS).map((k) => ({
      label: OUTCOME_LABELS[k],
      color: OUTCOME_COLORS[k],
      values: times.map((_, i) => names.reduce((a, n) => a + entities[n][i][k], 0)),
    }));
    const failures = names.map((n, i) => ({
      label: n,
      color: entityColor(i),
      values: entities[n].map((r) => r.FailureNotifications / step),
    }));
    const lag = names.map((n, i) => ({ label: n, color: entityColor(i), values: entities[n].map((r) => r.lagSeconds) }));
    clear(
      charts,
      stackedBars({ id: "c-notifications", title: `Notifications ${per}, by outcome`, width, times, series: outcomes, perMinute: step, unit: "per minute" }),
      lines({
        id: "c-failures",
        title: `Failed notifications ${per}, by entity`,
        width,
        times,
        series: failures,
        format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
        empty: "No notifications in the window.",
      }),
      lines({
        id: "c-lag",
        title: "Lag by entity (largest in each interval: time counted minus changedOn of the newest applied change)",
        width,
        times,
        series: lag,
        format: duration,
        empty: "Nothing applied in the window.",
        connectGaps: true,
      }),
    );
  }
  windowSel.addEventListener("change", load);
  entitySel.addEventListener("change", load);
  let resized = null;
  const onResize = () => {
    clearTimeout(resized);
    resized = setTimeout(load, 250);
  };
  window.addEventListener("resize", onResize);
  ctx.onLeave(() => window.removeEventListener("resize", onResize));
  await load();
  ctx.every(30_000, load);
}
