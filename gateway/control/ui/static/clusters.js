// Clusters: the backends (GET /gateway/backend/all) with their cluster state (STOPPED, STARTING, READY,
// UNHEALTHY, DRAINING, TERMINATING, DEACTIVATED) and their health (GET /gateway/health); ADMIN adds,
// edits, deletes, activates and deactivates (POST /gateway/backend/...), starts and stops a cluster
// that has a scaler (POST /gateway/backend/{name}/start, /stop), and follows a deactivated cluster's
// drain (GET /gateway/backend/{name}/drain) to "drained: safe to stop".
import { api, confirmDialog, el, every, mayChange, notice, replace, stateBadge } from "/assets/app.js";

let backends = [];
// The most work each draining cluster had since this page opened: the meter counts down from it.
const peaks = new Map();

// Where Start and Stop do something (elsewhere they are shown, disabled, with the reason).
const STARTABLE = new Set(["STOPPED", "DRAINING"]);
const STOPPABLE = new Set(["STARTING", "READY", "UNHEALTHY"]);

function clusterBadge(state) {
  const value = state || "READY";
  return el("span", { class: `badge cluster-${value.toLowerCase()}`, dataset: { clusterState: value } }, value);
}

function scalerButtons(b) {
  if (!b.scaler) return [];
  const state = b.state || "READY";
  const why = (verb) => (state === "DEACTIVATED" ? `Activate ${b.name} first` : `${b.name} is ${state}: nothing to ${verb}`);
  return [
    el(
      "button",
      { type: "button", onclick: () => startStop(b, true), "aria-label": `Start ${b.name}`, disabled: !STARTABLE.has(state), title: STARTABLE.has(state) ? null : why("start") },
      "Start",
    ),
    el(
      "button",
      { type: "button", class: "warn", onclick: () => startStop(b, false), "aria-label": `Stop ${b.name}`, disabled: !STOPPABLE.has(state), title: STOPPABLE.has(state) ? null : why("stop") },
      "Stop",
    ),
  ];
}

function actionButtons(b) {
  return el(
    "td",
    {},
    el(
      "div",
      { class: "actions" },
      el("button", { type: "button", class: "ghost", onclick: () => edit(b), "aria-label": `Edit ${b.name}` }, "Edit"),
      scalerButtons(b),
      b.active
        ? el("button", { type: "button", class: "warn", onclick: () => setActive(b, false), "aria-label": `Deactivate ${b.name}` }, "Deactivate")
        : el("button", { type: "button", onclick: () => setActive(b, true), "aria-label": `Activate ${b.name}` }, "Activate"),
      el("button", { type: "button", class: "danger", onclick: () => remove(b), "aria-label": `Delete ${b.name}` }, "Delete"),
    ),
  );
}

async function refresh() {
  const [list, health] = await Promise.all([api("GET", "/gateway/backend/all"), api("GET", "/gateway/health")]);
  const observed = new Map(health.map((h) => [h.name, h]));
  backends = list.sort((a, b) => a.name.localeCompare(b.name));
  const rows = backends.map((b) => {
    const h = observed.get(b.name) || {};
    return el(
      "tr",
      { id: b.name, dataset: { backend: b.name } },
      el("th", { scope: "row" }, b.name),
      el("td", {}, b.routingGroup),
      el("td", { class: "url" }, b.proxyTo),
      el("td", {}, b.active ? "active" : el("span", { class: "badge inactive" }, "inactive")),
      el("td", { class: "cluster-state" }, clusterBadge(b.state)),
      el("td", { class: "health" }, stateBadge(h.state || "PENDING")),
      el("td", { class: "num" }, h.inFlight ?? 0),
      el("td", { class: "num" }, b.weight),
      el("td", { class: "num" }, b.maxRunning ?? "—"),
      mayChange ? actionButtons(b) : null,
    );
  });
  replace(document.querySelector("#backends tbody"), rows.length ? rows : el("tr", {}, el("td", { colspan: 10 }, "No clusters yet.")));
  await refreshDrains();
}

async function refreshDrains() {
  const inactive = backends.filter((b) => !b.active);
  if (!inactive.length) {
    replace("drain-list", el("p", { class: "hint" }, "No cluster is deactivated."));
    return;
  }
  const statuses = await Promise.all(inactive.map((b) => api("GET", `/gateway/backend/${encodeURIComponent(b.name)}/drain`)));
  replace(
    "drain-list",
    statuses.map((s) =>
      el(
        "article",
        { class: `drain ${s.drained ? "done" : ""}`, dataset: { drain: s.name }, "aria-live": "polite" },
        el("h3", {}, s.name),
        s.drained
          ? el("p", { class: "drained" }, "Drained — safe to stop")
          : el(
              "p",
              { class: "draining" },
              `Draining: ${s.unfinishedQueries} ${s.unfinishedQueries === 1 ? "query" : "queries"} and ` +
                `${s.openTransactions} open ${s.openTransactions === 1 ? "transaction" : "transactions"} left`,
              s.oldestQueryAgeSeconds != null ? ` (oldest query ${s.oldestQueryAgeSeconds} s)` : "",
            ),
        el("meter", { min: 0, max: peak(s), value: s.unfinishedQueries + s.openTransactions, "aria-hidden": "true" }),
      ),
    ),
  );
}

function peak(s) {
  const left = s.unfinishedQueries + s.openTransactions;
  const most = Math.max(1, left, peaks.get(s.name) || 0);
  peaks.set(s.name, most);
  return most;
}

async function setActive(b, active) {
  const question = active
    ? `Activate ${b.name}? It takes new queries of ${b.routingGroup} again.`
    : `Deactivate ${b.name}? It takes no new queries; running ones finish there.`;
  if (!(await confirmDialog(question, active ? "Activate" : "Deactivate"))) return;
  try {
    await api("POST", `/gateway/backend/${active ? "activate" : "deactivate"}/${encodeURIComponent(b.name)}`);
    notice(`${b.name} is ${active ? "active" : "deactivated: draining"}.`);
  } catch (error) {
    notice(`Could not change ${b.name}: ${error.message}`, "error");
  }
  await refresh();
}

async function startStop(b, start) {
  if (!start && !(await confirmDialog(`Stop ${b.name}? The gateway drains, then stops it: it takes no new queries, and once its running queries and open transactions have finished (on every gateway node) its scaler stops it.`, "Stop"))) return;
  try {
    const after = await api("POST", `/gateway/backend/${encodeURIComponent(b.name)}/${start ? "start" : "stop"}`);
    notice(start ? `${b.name}: start under way (${after.state}).` : `${b.name} is draining; it stops once drained.`);
  } catch (error) {
    notice(`Could not ${start ? "start" : "stop"} ${b.name}: ${error.message}`, "error");
  }
  await refresh();
}

async function remove(b) {
  if (!(await confirmDialog(`Delete ${b.name}? Queries running there are no longer reachable through the gateway.`, "Delete"))) return;
  try {
    await api("POST", "/gateway/backend/modify/delete", { name: b.name });
    notice(`${b.name} deleted.`);
  } catch (error) {
    notice(`Could not delete ${b.name}: ${error.message}`, "error");
  }
  await refresh();
}

// -- add and edit ------------------------------------------------------------------------------
const dialog = document.getElementById("backend-dialog");
const form = document.getElementById("backend-form");
let editing = null;

function edit(b) {
  editing = b;
  form.reset();
  document.getElementById("backend-dialog-title").textContent = b ? `Edit ${b.name}` : "Add a cluster";
  form.elements.name.readOnly = Boolean(b);
  if (b) {
    form.elements.name.value = b.name;
    form.elements.proxyTo.value = b.proxyTo;
    form.elements.externalUrl.value = b.externalUrl === b.proxyTo ? "" : b.externalUrl || "";
    form.elements.routingGroup.value = b.routingGroup;
    form.elements.weight.value = b.weight;
    form.elements.maxRunning.value = b.maxRunning ?? "";
    form.elements.active.checked = b.active;
  }
  document.getElementById("backend-error").hidden = true;
  dialog.showModal();
}

if (mayChange) {
  document.getElementById("add-backend").addEventListener("click", () => edit(null));
  document.getElementById("backend-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    const body = {
      ...(editing || {}),
      name: f.name.value.trim(),
      proxyTo: f.proxyTo.value.trim(),
      externalUrl: f.externalUrl.value.trim() || null,
      routingGroup: f.routingGroup.value.trim(),
      weight: Number(f.weight.value || 1),
      maxRunning: f.maxRunning.value === "" ? null : Number(f.maxRunning.value),
      active: f.active.checked,
    };
    try {
      await api("POST", editing ? "/gateway/backend/modify/update" : "/gateway/backend/modify/add", body);
      dialog.close();
      notice(`${body.name} saved.`);
      await refresh();
    } catch (error) {
      const box = document.getElementById("backend-error");
      box.textContent = error.message;
      box.hidden = false;
    }
  });
}

every(2000, refresh);
