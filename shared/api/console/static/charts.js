// Charts drawn as inline SVG (no library): stacked bars and lines over time, each with a title,
// a text summary for screen readers, an HTML legend and the numbers in a table.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
export const OUTCOME_COLORS = {
  SuccessNotifications: "#2e7d32",
  FailureNotifications: "#c62828",
  StaleNotifications: "#757575",
  UnprocessableNotifications: "#ef6c00",
  SkippedNotifications: "#1565c0",
};
export const OUTCOME_LABELS = {
  SuccessNotifications: "succeeded",
  FailureNotifications: "failed",
  StaleNotifications: "stale",
  UnprocessableNotifications: "unprocessable",
  SkippedNotifications: "skipped",
};
const PALETTE = ["#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457", "#4e342e"];
export const entityColor = (i) => PALETTE[i % PALETTE.length];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// The API's sparse per-minute points as dense steps over the window (at most ~180 steps).
export function resample(history, minutes) {
  const step = Math.max(1, Math.ceil(minutes / 180));
  const end = new Date(history.end).getTime();
  const n = Math.ceil(minutes / step);
  const start = end - n * step * 60_000;
  const times = Array.from({ length: n }, (_, i) => new Date(start + i * step * 60_000));
  const entities = {};
  for (const e of history.entities) {
    const rows = times.map(() => ({
      TotalNotifications: 0, SuccessNotifications: 0, FailureNotifications: 0, StaleNotifications: 0,
      UnprocessableNotifications: 0, SkippedNotifications: 0, lagSeconds: null,
    }));
    for (const p of e.points) {
      const i = Math.floor((new Date(p.minute).getTime() - start) / (step * 60_000));
      if (i < 0 || i >= n) continue;
      const r = rows[i];
      for (const k of Object.keys(r)) {
        if (k === "lagSeconds") {
          if (p.lagSeconds !== null && (r.lagSeconds === null || p.lagSeconds > r.lagSeconds)) r.lagSeconds = p.lagSeconds;
        } else r[k] += p[k];
      }
    }
    entities[e.entity] = rows;
  }
  return { times, step, entities };
}

// A round maximum for the y axis and how many intervals divide it into round steps.
function niceScale(v) {
  if (!(v > 0)) return { max: 1, ticks: 4 };
  const p = 10 ** Math.floor(Math.log10(v));
  for (const [m, ticks] of [[1, 5], [2, 4], [2.5, 5], [5, 5], [10, 5]]) if (m * p >= v) return { max: m * p, ticks };
  return { max: 10 * p, ticks: 5 };
}

const hhmm = (d) => d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });

function frame(width, height, { max, ticks: yTicks }, times, yFormat) {
  const m = { left: 56, right: 12, top: 12, bottom: 26 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const g = s("g", { class: "axes" });
  for (let i = 0; i <= yTicks; i++) {
    const v = (max * i) / yTicks;
    const y = m.top + ph - (ph * i) / yTicks;
    g.append(s("line", { x1: m.left, x2: m.left + pw, y1: y, y2: y, class: i ? "grid" : "axis" }));
    g.append(s("text", { x: m.left - 6, y: y + 4, "text-anchor": "end" }, yFormat(v)));
  }
  const ticks = Math.min(6, times.length);
  for (let i = 0; i < ticks; i++) {
    const idx = Math.round((i * (times.length - 1)) / Math.max(1, ticks - 1));
    const x = m.left + ((idx + 0.5) * pw) / times.length;
    g.append(s("line", { x1: x, x2: x, y1: m.top + ph, y2: m.top + ph + 4, class: "axis" }));
    g.append(s("text", { x, y: height - 6, "text-anchor": "middle" }, hhmm(times[idx])));
  }
  return { m, pw, ph, g };
}

function svgRoot(width, height, id, title, desc) {
  return s(
    "svg",
    { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": `${id}-t ${id}-d`, class: "chart" },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, desc),
  );
}

function legend(items) {
  return h(
    "ul",
    { class: "legend" },
    items.map((it) => h("li", {}, h("span", { class: "swatch", "data-color": it.color, "aria-hidden": "true" }), it.label)),
  );
}

function paintSwatches(root) {
  for (const el of root.querySelectorAll(".swatch[data-color]")) el.style.background = el.dataset.color;
}

function dataTable(caption, times, columns) {
  const rows = times
    .map((t, i) => [t, columns.map((c) => c.values[i])])
    .filter(([, vals]) => vals.some((v) => v !== null && v !== 0));
  return h(
    "details",
    { class: "data" },
    h("summary", {}, `Numbers (${rows.length} ${rows.length === 1 ? "interval" : "intervals"} with data)`),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("caption", { class: "sr-only" }, caption),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "from"), columns.map((c) => h("th", { scope: "col" }, c.label)))),
        h("tbody", {}, rows.map(([t, vals]) => h("tr", {}, h("td", {}, hhmm(t)), vals.map((v) => h("td", { class: "num" }, c(v)))))),
      ),
    ),
  );
  function c(v) {
    return v === null ? "–" : Number.isInteger(v) ? String(v) : v.toFixed(2);
  }
}

// Stacked bars: one bar per step, one colored segment per series.
export function stackedBars({ id, title, width, height = 220, times, series, perMinute = 1, unit }) {
  const totals = times.map((_, i) => series.reduce((a, se) => a + se.values[i], 0) / perMinute);
  const scale = niceScale(Math.max(0, ...totals));
  const max = scale.max;
  const fmt = (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)}k` : Number.isInteger(v) ? String(v) : v.toFixed(1));
  const peak = Math.max(0, ...totals);
  const peakAt = totals.indexOf(peak);
  const sum = series.reduce((a, se) => a + se.values.reduce((x, y) => x + y, 0), 0);
  const desc = sum
    ? `${sum} notifications in the window; at most ${fmt(peak)} ${unit} (at ${hhmm(times[peakAt])}). ` +
      series.map((se) => `${se.label}: ${se.values.reduce((x, y) => x + y, 0)}`).join(", ") + "."
    : "No notifications in the window.";
  const svg = svgRoot(width, height, id, title, desc);
  const { m, pw, ph, g } = frame(width, height, scale, times, fmt);
  svg.append(g);
  const bw = pw / times.length;
  const bars = s("g", { class: "bars" });
  times.forEach((t, i) => {
    if (!totals[i]) return;
    let y = m.top + ph;
    const col = s("g", {}, s("title", {}, `${hhmm(t)}: ` + series.map((se) => `${se.label} ${fmt(se.values[i] / perMinute)}`).join(", ")));
    for (const se of series) {
      const v = se.values[i] / perMinute;
      if (!v) continue;
      const hgt = (v / max) * ph;
      y -= hgt;
      col.append(s("rect", { x: m.left + i * bw + bw * 0.1, y, width: Math.max(1, bw * 0.8), height: hgt, fill: se.color }));
    }
    bars.append(col);
  });
  svg.append(bars);
  const wrap = h("figure", { class: "chart-box" }, h("figcaption", {}, title), svg, legend(series), dataTable(title, times, series));
  paintSwatches(wrap);
  return wrap;
}

// Lines: one per series; null values leave gaps (or are bridged with connectGaps).
export function lines({ id, title, width, height = 220, times, series, format = (v) => String(v), empty, connectGaps = false }) {
  const all = series.flatMap((se) => se.values).filter((v) => v !== null);
  const scale = niceScale(Math.max(0, ...all));
  const max = scale.max;
  const desc = all.length
    ? series
        .map((se) => {
          const vals = se.values.filter((v) => v !== null);
          return vals.length ? `${se.label}: at most ${format(Math.max(...vals))}` : `${se.label}: no data`;
        })
        .join("; ") + "."
    : empty;
  const svg = svgRoot(width, height, id, title, desc);
  const { m, pw, ph, g } = frame(width, height, scale, times, format);
  svg.append(g);
  const x = (i) => m.left + ((i + 0.5) * pw) / times.length;
  const y = (v) => m.top + ph - (v / max) * ph;
  for (const se of series) {
    let d = "";
    let pen = false;
    se.values.forEach((v, i) => {
      if (v === null) {
        pen = pen && connectGaps;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    const group = s("g", { class: "series" }, s("title", {}, se.label));
    if (d) group.append(s("path", { d, fill: "none", stroke: se.color, "stroke-width": 2, "stroke-linejoin": "round" }));
    se.values.forEach((v, i) => {
      if (v === null) return;
      const single = !connectGaps && (i === 0 || se.values[i - 1] === null) && (i === se.values.length - 1 || se.values[i + 1] === null);
      if (single || (connectGaps && times.length <= 60) || (v > 0 && times.length <= 60 && !connectGaps)) {
        group.append(s("circle", { cx: x(i), cy: y(v), r: 2.5, fill: se.color }, s("title", {}, `${se.label} ${hhmm(times[i])}: ${format(v)}`)));
      }
    });
    svg.append(group);
  }
  if (!all.length) svg.append(s("text", { x: m.left + pw / 2, y: m.top + ph / 2, "text-anchor": "middle", class: "empty" }, empty));
  const wrap = h("figure", { class: "chart-box" }, h("figcaption", {}, title), svg, legend(series), dataTable(title, times, series));
  paintSwatches(wrap);
  return wrap;
}
