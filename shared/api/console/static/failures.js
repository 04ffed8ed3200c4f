// A profile's failure log: filter by time and entity, download the API's CSV, re-sync selected
// records. Without Blob storage the API answers 503 with its reason, shown as it is.

import { download, get, post } from "./api.js";
import { clear, confirmDialog, errorBox, field, h, toast, when } from "./dom.js";

function localInput(date) {
  const d = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

export async function render(ctx, id) {
  const p = await get(`/profiles/${id}`);
  const now = new Date();
  const start = h("input", { type: "datetime-local", value: localInput(new Date(now.getTime() - 24 * 3600_000)) });
  const end = h("input", { type: "datetime-local", value: localInput(new Date(now.getTime() + 60_000)) });
  const entity = h(
    "select",
    {},
    h("option", { value: "" }, "All entities"),
    [...p.entities, ...p.relationships].map((e) => h("option", { value: e }, e)),
  );
  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  const results = h("div", {});
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const csv = h("button", { type: "button", class: "secondary" }, "Download CSV");
  const resync = h("button", { type: "button", disabled: true }, "Re-sync selected");
  const filters = h(
    "form",
    { class: "card filters", "aria-label": "Filter failures" },
    h(
      "div",
      { class: "row" },
      field("From", start, null, "ff-start"),
      field("To", end, null, "ff-end"),
      field("Entity", entity, null, "ff-entity"),
    ),
    h("div", { class: "buttons" }, h("button", { type: "submit" }, "Show failures"), csv, resync),
  );
  clear(
    ctx.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Profiles"), " / ", h("a", { href: `#/profiles/${id}` }, p.name), " / "),
    h("h1", {}, `Failures of “${p.name}”`),
    h("p", { class: "muted" }, "Records the destination did not take, from the profile's failure log (times in your browser's time zone)."),
    filters,
    outcome,
    count,
    results,
  );

  let entries = [];
  const range = () => ({ start: new Date(start.value).toISOString(), end: new Date(end.value).toISOString() });
  const selected = () => [...results.querySelectorAll("tbody input:checked")].map((c) => entries[Number(c.value)]);
  const updateButtons = () => {
    const n = selected().length;
    resync.disabled = n === 0;
    resync.textContent = n ? `Re-sync selected (${n})` : "Re-sync selected";
  };

  async function load() {
    clear(outcome);
    clear(count, "Loading…");
    let rows;
    try {
      rows = await get(`/profiles/${id}/failures`, range());
    } catch (err) {
      clear(count);
      clear(results);
      clear(outcome, errorBox(err, err.status === 503 ? "The failure log is not available" : "The admin API refused"));
      return;
    }
    entries = entity.value ? rows.filter((r) => r.Entity === entity.value) : rows;
    clear(count, `${entries.length} ${entries.length === 1 ? "failure" : "failures"}${entity.value ? ` of ${entity.value}` : ""} (${rows.length} in the time range).`);
    clear(results, entries.length ? table(entries, updateButtons) : h("p", { class: "card empty" }, "No failures in this range."));
    updateButtons();
  }

  filters.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load();
  });
  csv.addEventListener("click", async () => {
    clear(outcome);
    try {
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
      const bytes = await download(`/profiles/${id}/failures`, {
        query: range(),
        accept: "text/csv",
        filename: `failures-${p.name.replace(/[^A-Za-z0-9_-]+/g, "_")}-${stamp}.csv`,
      });
      toast(`CSV downloaded (${bytes} bytes, every entity in the time range)`);
    } catch (err) {
      clear(outcome, errorBox(err, err.status === 503 ? "The failure log is not available" : "The admin API refused"));
    }
  });
  resync.addEventListener("click", async () => {
    const chosen = selected();
    const ids = [...new Set(chosen.map((r) => r.RecordId.toLowerCase()))];
    const ents = [...new Set(chosen.map((r) => r.Entity))];
    const ok = await confirmDialog(
      `Re-sync ${ids.length} ${ids.length === 1 ? "record" : "records"}?`,
      "Their parked notifications are applied again to the destination; what became stale meanwhile is skipped.",
      "Re-sync",
    );
    if (!ok) return;
    try {
      const r = await post(`/profiles/${id}/failures/resync`, { ...range(), entities: ents, recordIds: ids });
      const counts = Object.entries(r.counts)
        .filter(([, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
      clear(outcome, h("div", { class: "notice", role: "status" }, `Re-sync: ${r.selected} selected, ${r.missing} without a parked notification; ${counts}.`));
      toast("Re-sync done");
    } catch (err) {
      clear(outcome, errorBox(err, err.status === 503 ? "Re-sync is not available" : "The admin API refused"));
    }
  });
  await load();
}

function table(entries, onChange) {
  const all = h("input", { type: "checkbox", "aria-label": "Select all failures" });
  const boxes = entries.map((r, i) => h("input", { type: "checkbox", value: i, "aria-label": `Select ${r.Entity} ${r.RecordId}` }));
  all.addEventListener("change", () => {
    boxes.forEach((b) => (b.checked = all.checked));
    onChange();
  });
  boxes.forEach((b) => b.addEventListener("change", onChange));
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "failures" },
      h("caption", { class: "sr-only" }, "Failures"),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, all),
          ["Entity", "Record", "Change", "Version", "Notification time", "Reason", "Logged"].map((c) => h("th", { scope: "col" }, c)),
        ),
      ),
      h(
        "tbody",
        {},
        entries.map((r, i) =>
          h(
            "tr",
            {},
            h("td", {}, boxes[i]),
            h("td", {}, r.Entity),
            h("td", {}, h("code", {}, r.RecordId)),
            h("td", {}, r.ChangeType),
            h("td", { class: "num" }, r.Version),
            h("td", {}, when(r.NotificationTime)),
            h("td", { class: "reason" }, r.FailureReason),
            h("td", {}, when(r.LoggedAt)),
          ),
        ),
      ),
    ),
  );
}
