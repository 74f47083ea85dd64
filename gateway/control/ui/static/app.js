// What every page shares: calls to the admin API (with the session's CSRF token), safe DOM
// building (text is always set as text, never parsed as HTML), formatting, and live refresh.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
export const mayChange = document.querySelector('meta[name="may-change"]')?.content === "true";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Call the admin API; JSON in and out. A 401 sends the browser to the login form and back. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    const here = location.pathname + location.search;
    location.assign(`/gateway/login?next=${encodeURIComponent(here)}`);
    throw new ApiError(401, "not logged in");
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = (data && data.error) || (typeof data === "string" && data) || response.statusText;
    throw new ApiError(response.status, message, data);
  }
  return data;
}

/** el("a", {href: "/x", class: "y"}, "text", child...): an element; strings become text nodes. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function replace(target, ...children) {
  const node = typeof target === "string" ? document.getElementById(target) : target;
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** A short line in the page's status region (read out by screen readers). */
export function notice(message, kind = "info", tag = "") {
  const box = document.getElementById("notice");
  if (!box) return;
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.dataset.tag = tag;
  box.hidden = !message;
}

/** Take back a failed refresh's notice once a refresh works again (other notices stay). */
function refreshWorks() {
  const box = document.getElementById("notice");
  if (box && box.dataset.tag === "refresh") notice("");
}

export function time(ms) {
  if (ms === null || ms === undefined) return "";
  const date = new Date(ms);
  return date.toLocaleString(undefined, { hour12: false });
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

/** A size in bytes as people read it: 512 B, 1.5 KiB, 20.3 MiB. */
export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The result cache's word on a query (hit, waited, miss, refused, "not eligible: why"), or null. */
export function cacheBadge(word) {
  if (!word) return null;
  const [kind, ...why] = word.split(":");
  const reason = why.join(":").trim();
  return el(
    "span",
    { class: `badge cache-${kind.trim().replace(/\s+/g, "-")}`, title: reason || null, dataset: { cache: word } },
    kind.trim(),
    reason ? el("span", { class: "sr-only" }, `: ${reason}`) : null,
  );
}

export function stateBadge(state) {
  const value = state || "RUNNING";
  return el("span", { class: `badge state-${value.toLowerCase()}` }, value);
}

/** Run ``task`` now and every ``ms`` while the page is visible; errors show in the notice line. */
export function every(ms, task) {
  let timer = null;
  let stopped = false;
  async function run() {
    timer = null;
    if (stopped) return;
    try {
      await task();
      refreshWorks();
    } catch (error) {
      if (error.status !== 401) notice(`Could not refresh: ${error.message}`, "error", "refresh");
    }
    if (!stopped && !document.hidden) timer = setTimeout(run, ms);
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null && !stopped) run();
  });
  run();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
  };
}

/** Ask before doing something that matters; resolves true when confirmed. Keyboard: Esc cancels. */
export function confirmDialog(question, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = el(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-q" },
      el("p", { id: "confirm-q" }, question),
      el(
        "form",
        { method: "dialog", class: "actions" },
        el("button", { value: "cancel", class: "ghost" }, "Cancel"),
        el("button", { value: "ok", class: "danger" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The query string as an object, and back: pages keep their filters in the address bar. */
export function params() {
  return Object.fromEntries(new URLSearchParams(location.search));
}

export function setParams(values) {
  const search = new URLSearchParams(Object.entries(values).filter(([, v]) => v !== "" && v != null));
  history.replaceState(null, "", `${location.pathname}${search.size ? "?" + search : ""}`);
}

/** Pages of a list: the "Newer"/"Older" buttons and the "n of m" label of the page's pager. */
export class Pager {
  constructor(size, load) {
    this.size = size;
    this.offset = Number(params().offset) || 0;
    this.load = load;
    this.loads = 0; // loads sent so far: see newest()
    document.getElementById("previous").addEventListener("click", () => this.go(this.offset - this.size));
    document.getElementById("next").addEventListener("click", () => this.go(this.offset + this.size));
  }

  go(offset) {
    this.offset = Math.max(0, offset);
    return this.load();
  }

  /** The answer to this list's newest load only. Loads overlap (the page's first, then a search sent
   * before it is answered); an older answer that comes last would otherwise replace the newer one's
   * rows. An older answer, or its error, never settles: nothing is drawn for it. */
  newest(answer) {
    const mine = ++this.loads;
    const superseded = new Promise(() => {});
    return answer.then(
      (value) => (mine === this.loads ? value : superseded),
      (error) => (mine === this.loads ? Promise.reject(error) : superseded),
    );
  }

  shown(total, count) {
    document.getElementById("page").textContent = total
      ? `${Math.floor(this.offset / this.size) + 1} of ${Math.ceil(total / this.size)}`
      : "";
    document.getElementById("previous").disabled = this.offset === 0;
    document.getElementById("next").disabled = this.offset + count >= total;
  }
}

const ESTIMATES = [
  ["outputRowCount", "rows"],
  ["outputSizeInBytes", "bytes"],
  ["cpuCost", "CPU"],
  ["memoryCost", "memory"],
  ["networkCost", "network"],
];
const SHAPE = [
  ["fragments", "fragment"],
  ["joins", "join"],
  ["tableScans", "table scan"],
  ["remoteExchanges", "remote exchange"],
  ["aggregations", "aggregation"],
  ["nodes", "node"],
];

function waited(ms) {
  return ms < 1 ? "under 1 ms" : duration(Math.round(ms));
}

function estimateNumber(value) {
  if (value === null || value === undefined) return "unknown";
  return Math.abs(value) >= 1e6 ? value.toExponential(2) : value.toLocaleString(undefined, { maximumFractionDigits: 1 });
}

/** The planner's estimate routing had (the API's Estimate), or why there was none. */
export function estimateView(estimate, id = "estimate") {
  if (!estimate.available) {
    return el("div", { id, class: "estimate" }, el("p", {}, "None: ", el("code", { class: "estimate-cause" }, estimate.cause || "unknown"), ` (waited ${waited(estimate.latencyMs)}); routed as if none had been asked for.`));
  }
  const source = estimate.source === "cache" ? "from the cache" : `from the planner in ${waited(estimate.latencyMs)}`;
  return el(
    "div",
    { id, class: "estimate" },
    el("p", { class: "estimate-source" }, source),
    el(
      "table",
      { class: "data" },
      el("caption", {}, "Estimates: total over the plan's nodes, and the largest of one node"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, ""), ...ESTIMATES.map(([, label]) => el("th", { scope: "col", class: "num" }, label)))),
      el(
        "tbody",
        {},
        ["total", "max"].map((kind) =>
          el("tr", {}, el("th", { scope: "row" }, kind), ...ESTIMATES.map(([name]) => el("td", { class: "num", dataset: { estimate: `${kind}.${name}` } }, estimateNumber(estimate[kind][name])))),
        ),
      ),
    ),
    el("p", { class: "estimate-shape" }, SHAPE.map(([name, label]) => `${estimate[name]} ${label}${estimate[name] === 1 ? "" : "s"}`).join(", ")),
  );
}
