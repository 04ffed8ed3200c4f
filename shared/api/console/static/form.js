// Create / edit a profile, step by step like the DES wizard: destination and properties, then
// entities, then N:N relationships, then review. The API validates; its messages are shown at the
// fields they name. "Validate" runs the API's validation with the live destination check.
// With a Dataverse source (environment URL and authentication), "Load tables from the source" asks
// POST /sources/tables and offers the environment's tables as checkboxes (tables without change
// tracking disabled, with the reason); the text areas stay the profile's lists, typed names included.

import { ApiError, call, post } from "./api.js";
import { checksList, clear, errorBox, field, fieldPath, h, toast } from "./dom.js";

const STEPS = ["Destination and properties", "Entities", "N:N relationships", "Review"];
const AUTH_KINDS = [
  ["managedIdentity", "Managed identity"],
  ["workloadIdentity", "Workload identity"],
  ["clientSecret", "Client secret (Key Vault)"],
  ["certificate", "Certificate (Key Vault)"],
  ["developmentToken", "Development token (simulators and tests)"],
];
const FIELD_STEP = {
  name: 0, organizationId: 0, destination: 0, schema: 0, prefix: 0, retryCount: 0, retryIntervalSeconds: 0,
  writeDeleteLog: 0, id: 0, state: 0, source: 1, entities: 1, relationships: 2,
};

export async function render(ctx, id) {
  let current = null;
  let etag = null;
  if (id) {
    const r = await call("GET", `/profiles/${id}`);
    current = r.data;
    etag = r.etag;
  }
  const inputs = {
    name: h("input", { type: "text", autocomplete: "off", maxlength: 200 }),
    organizationId: h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "00000000-0000-0000-0000-000000000000" }),
    destination: h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "https://<vault>.vault.azure.net/secrets/<name>" }),
    schema: h("input", { type: "text", autocomplete: "off", spellcheck: "false" }),
    prefix: h("input", { type: "text", autocomplete: "off", spellcheck: "false" }),
    retryCount: h("input", { type: "number", inputmode: "numeric", min: 0, max: 20 }),
    retryIntervalSeconds: h("input", { type: "number", inputmode: "numeric", min: 0, max: 3600 }),
    writeDeleteLog: h("input", { type: "checkbox" }),
    entities: h("textarea", { rows: 6, spellcheck: "false", placeholder: "account\ncontact" }),
    relationships: h("textarea", { rows: 4, spellcheck: "false", placeholder: "listmember" }),
    source: h("input", { type: "text", inputmode: "url", autocomplete: "off", spellcheck: "false", placeholder: "https://contoso.crm.dynamics.com" }),
  };
  const auth = {
    kind: h("select", {}, AUTH_KINDS.map(([k, label]) => h("option", { value: k }, label))),
    tenantId: h("input", { type: "text", autocomplete: "off", spellcheck: "false" }),
    clientId: h("input", { type: "text", autocomplete: "off", spellcheck: "false" }),
    secretUri: h("input", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "https://<vault>.vault.azure.net/secrets/<name>" }),
  };
  const v = current || { retryCount: 12, retryIntervalSeconds: 5, entities: [], relationships: [] };
  inputs.name.value = v.name || "";
  inputs.organizationId.value = v.organizationId || "";
  inputs.schema.value = v.schema || "";
  inputs.prefix.value = v.prefix || "";
  inputs.retryCount.value = v.retryCount;
  inputs.retryIntervalSeconds.value = v.retryIntervalSeconds;
  inputs.writeDeleteLog.checked = !!v.writeDeleteLog;
  inputs.entities.value = (v.entities || []).join("\n");
  inputs.relationships.value = (v.relationships || []).join("\n");
  const src = v.source || null;
  inputs.source.value = src ? src.environmentUrl : "";
  auth.kind.value = src ? src.auth.kind : "managedIdentity";
  auth.tenantId.value = (src && src.auth.tenantId) || "";
  auth.clientId.value = (src && src.auth.clientId) || "";
  auth.secretUri.value = (src && (src.auth.clientSecretUri || src.auth.certificateUri)) || "";

  const loadTables = h("button", { type: "button", class: "secondary", id: "f-load-tables" }, "Load tables from the source");
  const picker = h("div", { class: "table-picker", "aria-live": "polite" });
  const syncLoad = () => (loadTables.disabled = !inputs.source.value.trim());
  inputs.source.addEventListener("input", syncLoad);
  syncLoad();

  const destHelp = current
    ? `Leave empty to keep the current destination (${current.destination}).`
    : "A Key Vault secret URI whose secret is the connection string; a literal connection string only where the app allows it (development).";
  const steps = [
    h(
      "fieldset",
      {},
      h("legend", {}, STEPS[0]),
      field("Name", inputs.name, "Unique, 1–100 printable characters.", "f-name"),
      field("Organization id", inputs.organizationId, "The Dataverse organization (GUID) whose changes this profile exports.", "f-organizationId"),
      field("Destination", inputs.destination, destHelp, "f-destination"),
      h(
        "div",
        { class: "row" },
        field("Schema", inputs.schema, "Alphanumeric; empty: the database's default.", "f-schema"),
        field("Table prefix", inputs.prefix, "Alphanumeric, fewer than 15 characters.", "f-prefix"),
      ),
      h(
        "div",
        { class: "row" },
        field("Retry count", inputs.retryCount, "0–20 retries of a failing record.", "f-retryCount"),
        field("Retry interval (seconds)", inputs.retryIntervalSeconds, "0–3600.", "f-retryIntervalSeconds"),
      ),
      h(
        "div",
        { class: "field check" },
        inputs.writeDeleteLog,
        h("label", { for: "f-writeDeleteLog" }, "Keep a delete log (<prefix>_DeleteLog)"),
        h("small", { id: "f-writeDeleteLog-error", class: "error", "aria-live": "polite" }),
      ),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, STEPS[1]),
      field("Dataverse environment URL (optional)", inputs.source, "Pull from this environment with change tracking; empty: notifications from Service Bus only.", "f-source"),
      h(
        "div",
        { class: "row" },
        field("Authentication", auth.kind, "How the app gets a token for the environment.", "f-source-kind"),
        field("Tenant id", auth.tenantId, "clientSecret, certificate, workloadIdentity.", "f-source-tenantId"),
        field("Client id", auth.clientId, "The application user (or a user-assigned identity).", "f-source-clientId"),
      ),
      field("Key Vault secret URI", auth.secretUri, "The client secret, or the certificate with its key (never the secret itself).", "f-source-secretUri"),
      h("div", { class: "buttons" }, loadTables),
      picker,
      field("Entities (logical names)", inputs.entities, "One per line (or separated by commas); tables not listed above may be typed.", "f-entities"),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, STEPS[2]),
      field("N:N relationships (intersect entity logical names)", inputs.relationships, "One per line; may be empty.", "f-relationships"),
    ),
    h("fieldset", {}, h("legend", {}, STEPS[3]), h("div", { class: "review" })),
  ];
  inputs.writeDeleteLog.id = "f-writeDeleteLog";

  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  const stepper = h("ol", { class: "stepper" });
  const back = h("button", { type: "button", class: "secondary" }, "Back");
  const next = h("button", { type: "button" }, "Next");
  const validate = h("button", { type: "button", class: "secondary" }, "Validate");
  const save = h("button", { type: "submit", value: "draft" }, current ? "Save" : "Create draft");
  const saveActive = current ? null : h("button", { type: "submit", value: "active", class: "secondary" }, "Create and activate");
  const formEl = h(
    "form",
    { class: "card wizard", novalidate: true, "aria-labelledby": "form-title" },
    stepper,
    steps,
    h("div", { class: "buttons" }, back, next, validate, save, saveActive),
  );
  let at = 0;
  const show = (i) => {
    at = Math.max(0, Math.min(STEPS.length - 1, i));
    steps.forEach((s, j) => (s.hidden = j !== at));
    clear(
      stepper,
      STEPS.map((label, j) =>
        h(
          "li",
          {},
          h("button", { type: "button", class: "link", "aria-current": j === at ? "step" : null, onclick: () => show(j) }, `${j + 1}. ${label}`),
        ),
      ),
    );
    back.disabled = at === 0;
    next.hidden = at === STEPS.length - 1;
    if (at === STEPS.length - 1) review(steps[3].querySelector(".review"), body());
  };

  function list(text) {
    return text
      .split(/[\s,;]+/)
      .map((x) => x.trim())
      .filter(Boolean);
  }
  function sourceBody() {
    const url = inputs.source.value.trim();
    if (!url) return null;
    const kind = auth.kind.value;
    const a = { kind };
    const tenant = auth.tenantId.value.trim();
    const client = auth.clientId.value.trim();
    const secret = auth.secretUri.value.trim();
    if (tenant) a.tenantId = tenant;
    if (client) a.clientId = client;
    if (secret && kind === "clientSecret") a.clientSecretUri = secret;
    if (secret && kind === "certificate") a.certificateUri = secret;
    return { environmentUrl: url, auth: a };
  }
  function setListed(textarea, name, on) {
    const names = list(textarea.value).filter((x) => x !== name);
    if (on) names.push(name);
    textarea.value = names.join("\n");
  }
  function showTables(tables) {
    const entities = new Set(list(inputs.entities.value));
    const relationships = new Set(list(inputs.relationships.value));
    const box = (t) => {
      const id = `t-${t.logicalName}`;
      const target = t.isIntersect ? inputs.relationships : inputs.entities;
      const chosen = (t.isIntersect ? relationships : entities).has(t.logicalName);
      const input = h("input", {
        type: "checkbox", id, value: t.logicalName, checked: chosen, disabled: !t.exportable,
        "aria-describedby": t.reason ? `${id}-reason` : null,
        onchange: (ev) => setListed(target, t.logicalName, ev.target.checked),
      });
      const label = t.displayName ? `${t.displayName} (${t.logicalName})` : t.logicalName;
      return h(
        "li",
        { class: t.exportable ? "" : "muted" },
        input,
        " ",
        h("label", { for: id }, label),
        h("small", { class: "help" }, ` ${t.entitySetName}`),
        t.reason ? h("small", { id: `${id}-reason`, class: "reason" }, ` — ${t.reason}`) : null,
      );
    };
    const plain = tables.filter((t) => !t.isIntersect);
    const intersect = tables.filter((t) => t.isIntersect);
    clear(
      picker,
      h("fieldset", { class: "tables" }, h("legend", {}, `Tables in the source (${plain.length})`), h("ul", { class: "table-list" }, plain.map(box))),
      intersect.length
        ? h("fieldset", { class: "tables" }, h("legend", {}, "N:N intersect tables (relationships)"), h("ul", { class: "table-list" }, intersect.map(box)))
        : null,
    );
  }
  loadTables.addEventListener("click", async () => {
    const s = sourceBody();
    if (!s) return;
    loadTables.disabled = true;
    clear(picker, h("p", { class: "muted" }, "Reading the environment's tables…"));
    try {
      const r = await post("/sources/tables", s);
      showTables(r.tables);
    } catch (err) {
      clear(picker, errorBox(err, "Could not load the tables"));
    } finally {
      syncLoad();
    }
  });
  function number(text) {
    const t = text.trim();
    return /^-?\d+$/.test(t) ? Number(t) : t; // anything else: the API says what is wrong
  }
  function body() {
    const b = {
      name: inputs.name.value.trim(),
      organizationId: inputs.organizationId.value.trim(),
      schema: inputs.schema.value.trim() || null,
      prefix: inputs.prefix.value.trim(),
      retryCount: number(inputs.retryCount.value),
      retryIntervalSeconds: number(inputs.retryIntervalSeconds.value),
      writeDeleteLog: inputs.writeDeleteLog.checked,
      entities: list(inputs.entities.value),
      relationships: list(inputs.relationships.value),
      source: sourceBody(),
    };
    const dest = inputs.destination.value.trim();
    if (dest || !current) b.destination = dest;
    return b;
  }

  function clearErrors() {
    for (const el of formEl.querySelectorAll(".error")) el.textContent = "";
    for (const el of formEl.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }
  function showErrors(err) {
    clearErrors();
    let first = null;
    for (const f of err.fields) {
      const name = (f.loc || []).find((p) => typeof p === "string" && p in inputs);
      if (!name) continue;
      const slot = formEl.querySelector(`#f-${name}-error`);
      const input = inputs[name];
      const path = fieldPath(f.loc);
      const text = path === name ? f.msg : `${path}: ${f.msg}`; // e.g. entities[2]: ...
      if (slot) slot.textContent = (slot.textContent ? slot.textContent + " " : "") + text;
      if (input) input.setAttribute("aria-invalid", "true");
      if (first === null || FIELD_STEP[name] < FIELD_STEP[first]) first = name;
    }
    if (err.status === 409 && !err.checks && /name/.test(String(err.detail))) {
      formEl.querySelector("#f-name-error").textContent = String(err.detail);
      inputs.name.setAttribute("aria-invalid", "true");
      first = "name";
    }
    if (first !== null) {
      show(FIELD_STEP[first]);
      inputs[first].focus();
    }
  }

  back.addEventListener("click", () => show(at - 1));
  next.addEventListener("click", () => show(at + 1));
  validate.addEventListener("click", async () => {
    clearErrors();
    clear(outcome, h("p", { class: "muted" }, "Validating (fields, name, then the destination live)…"));
    try {
      const b = body();
      if (current) {
        b.id = current.id;
        if (!b.destination) {
          clear(outcome, errorBox(new ApiError(400, { detail: "enter the destination to validate it (it is never shown back)" }), "Cannot validate"));
          return;
        }
      }
      const r = await post("/profiles/validate", b);
      clear(outcome, checksList(r.checks, r.valid ? "Validation: passed" : "Validation: failed"));
    } catch (err) {
      clear(outcome, errorBox(err));
      if (err instanceof ApiError) showErrors(err);
    }
  });
  formEl.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const activate = ev.submitter && ev.submitter.value === "active";
    clearErrors();
    clear(outcome, h("p", { class: "muted" }, activate ? "Creating, checking the destination and activating…" : "Saving…"));
    try {
      let saved;
      if (current) {
        saved = (await call("PUT", `/profiles/${current.id}`, { json: body(), ifMatch: etag })).data;
        toast(`“${saved.name}” saved (revision ${saved.revision})`);
      } else {
        saved = await post("/profiles", { ...body(), state: activate ? "active" : "draft" });
        toast(`“${saved.name}” created (${saved.state})`);
      }
      ctx.go(`/profiles/${saved.id}`);
    } catch (err) {
      clear(outcome, errorBox(err));
      if (err instanceof ApiError) showErrors(err);
    }
  });

  clear(
    ctx.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/" }, "Profiles"), " / ", current ? h("a", { href: `#/profiles/${current.id}` }, current.name) : null),
    h("h1", { id: "form-title" }, current ? `Edit “${current.name}”` : "New export profile"),
    outcome,
    formEl,
  );
  show(0);
}

function review(el, b) {
  const rows = [
    ["Name", b.name || "(missing)"],
    ["Organization id", b.organizationId || "(missing)"],
    ["Destination", b.destination === undefined ? "unchanged" : b.destination ? "entered (not shown)" : "(missing)"],
    ["Schema", b.schema || "database default"],
    ["Prefix", b.prefix || "none"],
    ["Retries", `${b.retryCount} × every ${b.retryIntervalSeconds} s`],
    ["Delete log", b.writeDeleteLog ? "kept" : "not kept"],
    ["Entities", b.entities.join(", ") || "none"],
    ["N:N relationships", b.relationships.join(", ") || "none"],
    ["Source", b.source ? `${b.source.environmentUrl} (${b.source.auth.kind})` : "none: notifications from Service Bus"],
  ];
  clear(el, h("dl", { class: "definition" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])));
}
