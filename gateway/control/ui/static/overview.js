// Overview: every routing group and its clusters (GET /gateway/health) with the queries waiting in the
// gateway, each group's use of the result cache and what its tiers hold (GET /gateway/cache; ADMIN
// purges it: DELETE /gateway/cache), and the last hour's queries per second and error rate
// (GET /gateway/queries/stats), all refreshed live.
import { api, bytes, confirmDialog, duration, el, every, mayChange, notice, replace, stateBadge } from "/assets/app.js";

// "running / max running" of the gateway's slots on a cluster, where it has a limit.
function slots(b) {
  return b.maxRunning == null ? "—" : `${b.runningSlots} / ${b.maxRunning}`;
}

// The group's queue in the gateway (as the answering worker holds it) and its settings.
function queueLine(queue) {
  const users = queue.waitingByUser.map((u) => `${u.user ?? "(no user)"} ${u.waiting}`);
  if (queue.otherUsersWaiting) users.push(`others ${queue.otherUsersWaiting}`);
  const settings = [`${queue.queuePolicy} turns`];
  if (queue.maxQueued != null) settings.push(`at most ${queue.maxQueued} waiting`);
  if (queue.maxQueueWait != null) settings.push(`at most ${duration(Math.round(queue.maxQueueWait * 1000))} each`);
  return el(
    "p",
    { class: "queue", dataset: { waiting: queue.waiting } },
    el("strong", {}, queue.waiting ? `${queue.waiting} waiting in the gateway` : "None waiting in the gateway"),
    users.length ? ` (${users.join(", ")})` : "",
    el("span", { class: "hint" }, ` · ${settings.join(", ")} · worker ${queue.worker}`),
  );
}

// The health checks that read a cluster's load (running, queued, workers): the others (INFO_API, QUERY,
// NOOP) only tell whether it is up (gateway/backends/health/monitors.py).
const LOAD_MONITORS = new Set(["UI_API", "JMX", "METRICS"]);

// A figure of the cluster's load, or "–" and why there is none.
function loadCell(b, value) {
  if (value != null) return el("td", { class: "num" }, value);
  const why = LOAD_MONITORS.has(b.monitor)
    ? `not reported by ${b.name}'s ${b.monitor} check yet`
    : `${b.name}'s ${b.monitor} check reports no load`;
  return el("td", { class: "num" }, el("span", { class: "no-figure", title: why, "aria-hidden": "true" }, "–"), el("span", { class: "sr-only" }, why));
}

function clusterRow(b) {
  return el(
    "tr",
    { dataset: { backend: b.name } },
    el("th", { scope: "row" }, el("a", { href: `/clusters#${encodeURIComponent(b.name)}` }, b.name)),
    el("td", {}, stateBadge(b.state)),
    el("td", {}, b.active ? "active" : el("span", { class: "badge inactive" }, b.drained ? "drained" : "draining")),
    el("td", { class: "num" }, b.score.toFixed(2)),
    loadCell(b, b.runningQueries),
    loadCell(b, b.queuedQueries),
    loadCell(b, b.workers),
    el("td", { class: "num" }, b.inFlight),
    el("td", { class: "num" }, slots(b)),
  );
}

// Under a group's table: the clusters whose health check cannot tell their load, and which can.
function noLoadNote(backends) {
  const byMonitor = new Map();
  for (const b of backends.filter((b) => !LOAD_MONITORS.has(b.monitor))) {
    if (!byMonitor.has(b.monitor)) byMonitor.set(b.monitor, []);
    byMonitor.get(b.monitor).push(b.name);
  }
  if (!byMonitor.size) return null;
  const lines = [...byMonitor].map(([monitor, names]) => `${names.join(", ")}: the ${monitor} health check reports no load.`);
  return el(
    "p",
    { class: "hint no-load" },
    `– in Running, Queued and Workers: ${lines.join(" ")} The UI_API, JMX and METRICS checks read it from the cluster; ` +
      "without them the score counts only the queries sent through this gateway worker.",
  );
}

async function refreshGroups() {
  const health = await api("GET", "/gateway/health");
  const groups = new Map();
  for (const backend of health) {
    if (!groups.has(backend.routingGroup)) groups.set(backend.routingGroup, []);
    groups.get(backend.routingGroup).push(backend);
  }
  if (!groups.size) {
    replace("groups", el("p", {}, "No clusters yet. ", el("a", { href: "/clusters" }, "Add one.")));
    return;
  }
  const cards = [...groups.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([group, backends]) => {
      const serving = backends.filter((b) => b.active && b.state === "HEALTHY").length;
      return el(
        "article",
        { class: "group", dataset: { group } },
        el("h3", {}, group, " ", el("span", { class: serving ? "badge state-healthy" : "badge state-unhealthy" }, `${serving}/${backends.length} serving`)),
        queueLine(backends[0].gatewayQueue),
        el(
          "div",
          { class: "scroll" },
          el(
            "table",
            { class: "data" },
            el("caption", { class: "sr-only" }, `Clusters of ${group}`),
            el(
              "thead",
              {},
              el("tr", {}, ...["Cluster", "State", "Active", "Score", "Running", "Queued", "Workers", "In flight", "Slots"].map((h) => el("th", { scope: "col" }, h))),
            ),
            el("tbody", {}, backends.map(clusterRow)),
          ),
        ),
        noLoadNote(backends),
      );
    });
  replace("groups", cards);
}

// -- the result cache ---------------------------------------------------------------------------
const TIERS = [
  ["memory", "Memory", "this gateway worker's"],
  ["disk", "Disk", "this gateway node's"],
  ["store", "Store", "shared by every node (SQLite or PostgreSQL)"],
];

function percent(ratio) {
  return ratio == null ? "–" : `${(100 * ratio).toFixed(1)} %`;
}

function ttl(seconds) {
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return duration(Math.round(seconds * 1000));
}

function ttlCell(g) {
  if (g.ttlSeconds == null) {
    const why = `${g.group} does not cache; a routing rule may`;
    return el("td", {}, el("span", { class: "no-figure", title: why, "aria-hidden": "true" }, "–"), el("span", { class: "sr-only" }, why));
  }
  return el("td", {}, ttl(g.ttlSeconds), g.optIn ? " (opt-in)" : "");
}

function cacheRow(g) {
  return el(
    "tr",
    { dataset: { cacheGroup: g.group } },
    el("th", { scope: "row" }, g.group),
    el("td", { class: "num ratio" }, percent(g.hitRatio)),
    el("td", { class: "num" }, g.hits + g.waited),
    el("td", { class: "num" }, g.misses),
    el("td", { class: "num" }, g.refused),
    el("td", { class: "num" }, g.notEligible),
    ttlCell(g),
    el("td", {}, g.shared ? "yes" : "no"),
    mayChange
      ? el("td", {}, el("button", { type: "button", class: "danger", onclick: () => purge(g.group), "aria-label": `Purge ${g.group}'s cache` }, "Purge"))
      : null,
  );
}

function tiersTable(status) {
  return el(
    "table",
    { class: "data", id: "cache-tiers" },
    el("caption", {}, "What the cache holds"),
    el("thead", {}, el("tr", {}, ...["Tier", "Entries", "Size"].map((h) => el("th", { scope: "col" }, h)))),
    el(
      "tbody",
      {},
      TIERS.filter(([name]) => status.tiers[name]).map(([name, label, whose]) =>
        el(
          "tr",
          { dataset: { tier: name } },
          el("th", { scope: "row" }, label, " ", el("span", { class: "hint" }, whose)),
          el("td", { class: "num" }, status.tiers[name].entries),
          el("td", { class: "num" }, bytes(status.tiers[name].size)),
        ),
      ),
    ),
  );
}

async function refreshCache() {
  const status = await api("GET", "/gateway/cache");
  const held = Object.values(status.tiers).some((t) => t.entries > 0);
  const toolbar = document.getElementById("cache-toolbar");
  if (toolbar) toolbar.hidden = !status.groups.length && !held;
  if (!status.groups.length) {
    const off = el(
      "p",
      { id: "cache-off" },
      "The result cache is off: no routing group caches. Turn it on per group with ",
      el("code", {}, "routing.groups.<group>.cache.ttl"),
      " (see docs/cache.md).",
    );
    replace("cache-panel", off, held ? tiersTable(status) : null);
    return;
  }
  const headers = ["Group", "Hit ratio", "Hits + waited", "Misses", "Refused", "Not eligible", "TTL", "Shared"];
  replace(
    "cache-panel",
    el(
      "div",
      { class: "scroll" },
      el(
        "table",
        { class: "data", id: "cache-groups" },
        el("caption", { class: "sr-only" }, "Each routing group's use of the result cache over the last hour"),
        el(
          "thead",
          {},
          el("tr", {}, ...headers.map((h) => el("th", { scope: "col" }, h)), mayChange ? el("th", { scope: "col" }, el("span", { class: "sr-only" }, "Actions")) : null),
        ),
        el("tbody", {}, status.groups.map(cacheRow)),
      ),
    ),
    el("div", { class: "scroll" }, tiersTable(status)),
    el("p", { class: "hint" }, `${status.flights} ${status.flights === 1 ? "query" : "queries"} running in this worker that identical ones may wait for.`),
  );
}

async function purge(group) {
  const what = group ? `the cached results of ${group}` : "every cached result, of every group";
  const question = `Purge ${what}? On every gateway node; their queries run on a cluster again until their results are cached anew.`;
  if (!(await confirmDialog(question, "Purge"))) return;
  try {
    const answer = await api("DELETE", group ? `/gateway/cache?group=${encodeURIComponent(group)}` : "/gateway/cache");
    const entries = `${answer.purged} ${answer.purged === 1 ? "entry" : "entries"}`;
    notice(`Purged ${entries} of the result cache (${group ? group : "every group"}).`);
  } catch (error) {
    notice(`Could not purge the cache: ${error.message}`, "error");
  }
  try {
    await refreshCache();
  } catch (error) {
    notice(`Could not refresh: ${error.message}`, "error", "refresh");
  }
}

if (mayChange) document.getElementById("purge-cache").addEventListener("click", () => purge(null));

// -- the chart --------------------------------------------------------------------------------
const HOUR = 3600 * 1000;
const STEP = 60;
const palette = ["#2f6fdf", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0b7285", "#c2255c", "#5f3dc4"];
let plot = null;
let lastStats = null;

function series(stats, by) {
  const start = Math.floor(stats.since / (STEP * 1000)) * STEP * 1000;
  const count = Math.max(1, Math.ceil((stats.until - start) / (STEP * 1000)));
  const xs = Array.from({ length: count }, (_, i) => (start + i * STEP * 1000) / 1000);
  const perKey = new Map();
  const failed = new Array(count).fill(0);
  const total = new Array(count).fill(0);
  const totals = new Map();
  for (const bucket of stats.buckets) {
    const i = Math.floor((bucket.at - start) / (STEP * 1000));
    if (i < 0 || i >= count) continue;
    const key = bucket[by];
    if (!perKey.has(key)) perKey.set(key, new Array(count).fill(0));
    perKey.get(key)[i] += bucket.queries;
    failed[i] += bucket.failed;
    total[i] += bucket.queries;
    const t = totals.get(key) || { queries: 0, failed: 0 };
    t.queries += bucket.queries;
    t.failed += bucket.failed;
    totals.set(key, t);
  }
  const keys = [...perKey.keys()].sort();
  const rates = keys.map((k) => perKey.get(k).map((n) => n / STEP));
  const errorRate = total.map((n, i) => (n ? (100 * failed[i]) / n : null));
  return { xs, keys, rates, errorRate, totals };
}

function colors() {
  const style = getComputedStyle(document.documentElement);
  return { text: style.getPropertyValue("--text").trim(), grid: style.getPropertyValue("--border").trim() };
}

function draw(stats) {
  lastStats = stats;
  const by = document.getElementById("chart-by").value;
  const { xs, keys, rates, errorRate, totals } = series(stats, by);
  const box = document.getElementById("chart");
  const { text, grid } = colors();
  const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
  const options = {
    width: Math.max(280, box.clientWidth),
    height: 260,
    scales: { x: { time: true }, rate: {}, pct: { range: [0, 100] } },
    axes: [
      { ...axis },
      { ...axis, scale: "rate", label: "queries/s" },
      { ...axis, scale: "pct", side: 1, label: "failed %", grid: { show: false } },
    ],
    series: [
      {},
      ...keys.map((key, i) => ({ label: String(key), scale: "rate", stroke: palette[i % palette.length], width: 2, value: (u, v) => (v == null ? "–" : v.toFixed(3)) })),
      { label: "failed %", scale: "pct", stroke: "#c92a2a", dash: [6, 4], width: 1.5, spanGaps: false, value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} %`) },
    ],
  };
  if (plot) plot.destroy();
  box.replaceChildren();
  plot = new window.uPlot(options, [xs, ...rates, errorRate], box);
  const rows = keys.map((key) => {
    const t = totals.get(key);
    return el(
      "tr",
      { dataset: { series: key } },
      el("th", { scope: "row" }, key),
      el("td", { class: "num" }, t.queries),
      el("td", { class: "num" }, t.failed),
      el("td", { class: "num" }, t.queries ? `${((100 * t.failed) / t.queries).toFixed(1)} %` : "–"),
    );
  });
  replace(document.querySelector("#chart-summary tbody"), rows.length ? rows : el("tr", {}, el("td", { colspan: 4 }, "No queries in the last hour.")));
}

async function refreshChart() {
  const now = Date.now();
  draw(await api("GET", `/gateway/queries/stats?since=${now - HOUR}&step=${STEP}`));
}

document.getElementById("chart-by").addEventListener("change", () => lastStats && draw(lastStats));
window.addEventListener("themechange", () => lastStats && draw(lastStats));
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => lastStats && draw(lastStats), 200);
});

every(3000, refreshGroups);
every(10000, refreshChart);
every(10000, refreshCache);
