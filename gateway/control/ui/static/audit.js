// The audit trail (GET /gateway/audit, ADMIN): every change through the admin API, and cluster management's
// moves of a cluster's state, newest first.
import { api, el, Pager, params, replace, setParams, time } from "/assets/app.js";

const PAGE = 50;
const form = document.getElementById("audit-filter");
const pager = new Pager(PAGE, () => load().catch(show));
form.elements.actor.value = params().actor || "";

function change(entry) {
  if (entry.before == null && entry.after == null) return "";
  const show = (value) => (typeof value === "string" ? value : JSON.stringify(value, null, 2));
  return el(
    "details",
    {},
    el("summary", {}, "before / after"),
    el("div", { class: "diff" }, el("pre", { "aria-label": "before" }, show(entry.before) ?? "–"), el("pre", { "aria-label": "after" }, show(entry.after) ?? "–")),
  );
}

async function load() {
  const actor = form.elements.actor.value.trim();
  setParams({ actor, offset: pager.offset || "" });
  const search = new URLSearchParams({ limit: PAGE, offset: pager.offset });
  if (actor) search.set("actor", actor);
  const page = await pager.newest(api("GET", `/gateway/audit?${search}`));
  replace(
    document.querySelector("#audit tbody"),
    page.entries.length
      ? page.entries.map((e) =>
          el(
            "tr",
            { dataset: { action: e.action, actor: e.actor } },
            el("td", {}, time(e.at)),
            el("td", {}, e.actor),
            el("td", {}, e.method),
            el("td", {}, e.address),
            el("td", {}, el("code", {}, e.action)),
            el("td", {}, e.target || ""),
            el("td", {}, el("span", { class: `badge outcome-${e.outcome}` }, e.outcome)),
            el("td", {}, change(e)),
          ),
        )
      : el("tr", {}, el("td", { colspan: 8 }, "No entry.")),
  );
  document.getElementById("count").textContent = `${page.total} ${page.total === 1 ? "entry" : "entries"}.`;
  pager.shown(page.total, page.entries.length);
}

function show(error) {
  replace(document.querySelector("#audit tbody"), el("tr", {}, el("td", { colspan: 8, class: "error" }, error.message)));
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  pager.go(0);
});
load().catch(show);
