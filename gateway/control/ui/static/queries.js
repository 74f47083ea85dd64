// Query history (GET /gateway/queries): filters kept in the address bar, pages of 50; the result
// cache's word on each query it had one on. A USER's list holds its own queries only: the API
// decides that, not this page.
import { api, cacheBadge, duration, el, Pager, params, replace, setParams, stateBadge, time } from "/assets/app.js";

const PAGE = 50;
const form = document.getElementById("filters");
const FIELDS = ["id", "text", "user", "group", "backend", "state", "since", "until"];
const pager = new Pager(PAGE, () => load().catch(show));

// datetime-local inputs hold local wall time; the API takes epoch milliseconds.
const toMs = (value) => (value ? String(new Date(value).getTime()) : "");
function toLocal(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function filters() {
  const out = {};
  for (const name of FIELDS) {
    const input = form.elements[name];
    if (!input) continue;
    const value = input.value.trim();
    out[name] = name === "since" || name === "until" ? toMs(value) : value;
  }
  return out;
}

function row(q) {
  const sql = q.query || "";
  return el(
    "tr",
    { dataset: { query: q.queryId } },
    el("th", { scope: "row" }, el("a", { href: `/queries/${encodeURIComponent(q.queryId)}` }, q.queryId)),
    el("td", {}, q.user || ""),
    el("td", {}, q.routingGroup),
    el("td", {}, q.backend),
    el("td", {}, stateBadge(q.state)),
    el("td", {}, time(q.submittedAt)),
    el("td", { class: "num" }, duration(q.queuedMs)),
    el("td", { class: "num" }, duration(q.elapsedMs)),
    el("td", { class: "cache" }, cacheBadge(q.cache)),
    el("td", { class: "sql", title: sql }, sql.length > 120 ? `${sql.slice(0, 120)}…` : sql),
  );
}

async function load() {
  const wanted = filters();
  const offset = pager.offset;
  setParams({ ...wanted, offset: offset || "" });
  const search = new URLSearchParams(Object.entries(wanted).filter(([, v]) => v));
  search.set("limit", PAGE);
  search.set("offset", offset);
  const page = await pager.newest(api("GET", `/gateway/queries?${search}`));
  replace(
    document.querySelector("#queries tbody"),
    page.queries.length ? page.queries.map(row) : el("tr", {}, el("td", { colspan: 10 }, "No query matches.")),
  );
  const last = Math.min(page.total, offset + page.queries.length);
  document.getElementById("count").textContent = page.total
    ? `${page.total} ${page.total === 1 ? "query" : "queries"}; showing ${offset + 1}–${last}.`
    : "No query matches.";
  pager.shown(page.total, page.queries.length);
}

function show(error) {
  replace(document.querySelector("#queries tbody"), el("tr", {}, el("td", { colspan: 10, class: "error" }, error.message)));
}

for (const [name, value] of Object.entries(params())) {
  if (form.elements[name]) form.elements[name].value = name === "since" || name === "until" ? toLocal(value) : value;
}
form.addEventListener("submit", (event) => {
  event.preventDefault();
  pager.go(0);
});
form.addEventListener("reset", () => setTimeout(() => pager.go(0)));
load().catch(show);
