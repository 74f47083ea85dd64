// One query (GET /gateway/queries/{id}): its SQL, timings (its wait in the gateway too), where it ran
// and why, the result cache's word on it, the planner's estimate routing had, its earlier attempts,
// its error, its trace, and its page in the Trino UI (through the gateway, which sends it to the
// query's cluster).
import { api, cacheBadge, duration, el, estimateView, replace, stateBadge, time } from "/assets/app.js";

const box = document.getElementById("query");
const id = box.dataset.queryId;

function fact(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function routedBy(q) {
  if (q.routingRule) return ["rule ", el("a", { href: `/rules#rule-${encodeURIComponent(q.routingRule)}` }, el("code", {}, q.routingRule))];
  if (q.routingSource === "header") return ["the X-Trino-Routing-Group header"];
  if (q.routingSource === "external") return ["the routing service"];
  if (q.routingSource === "cost") return ["the cost router"];
  return [q.routingSource === "default" || !q.routingSource ? "the default group" : q.routingSource];
}

// What the cache's word means, beside it (the reason why a query was not eligible is in its badge's title).
function cacheWhy(word) {
  if (word === "hit") return " answered from the cache, without a cluster";
  if (word === "waited") return " answered with the result of an identical query that was running";
  if (word === "miss") return " ran on a cluster; its result was cached if it could be";
  if (word === "refused") return " the client asked for no cached answer";
  if (word.startsWith("not eligible:")) return ` ${word.slice("not eligible:".length).trim()}`;
  return "";
}

async function load() {
  let q;
  try {
    q = await api("GET", `/gateway/queries/${encodeURIComponent(id)}`);
  } catch (error) {
    replace(box, el("p", { class: "error" }, error.status === 404 ? `No query ${id} that you may see.` : error.message));
    return;
  }
  document.title = `${q.queryId} · trino-gateway`;
  replace(
    box,
    el("h2", {}, q.queryId, " ", stateBadge(q.state)),
    el(
      "p",
      { class: "links" },
      el("a", { href: `/ui/query.html?${encodeURIComponent(q.queryId)}`, id: "trino-ui-link" }, "Open in the Trino UI"),
      q.traceUrl ? [" · ", el("a", { href: q.traceUrl, id: "trace-link", rel: "noopener" }, "Open its trace")] : null,
    ),
    el("h3", {}, "SQL"),
    el("pre", { class: "sql" }, q.query || "(not recorded)"),
    el(
      "dl",
      { class: "facts" },
      fact("User", q.user || "–"),
      fact("Source", q.source || "–"),
      fact("Client tags", q.clientTags.length ? q.clientTags.join(", ") : "–"),
      fact("Routing group", q.routingGroup),
      fact("Chosen by", ...routedBy(q)),
      fact("Cluster", el("a", { href: `/clusters#${encodeURIComponent(q.backend)}` }, q.backend), " ", el("span", { class: "url" }, q.backendUrl)),
      fact("Gateway id", q.gatewayQueryId ? el("code", { id: "gateway-id" }, q.gatewayQueryId) : "–"),
      fact("Queued in the gateway", q.queuedMs == null ? "–" : el("span", { id: "queued" }, duration(q.queuedMs))),
      fact("Result cache", q.cache ? el("span", { id: "cache-word" }, cacheBadge(q.cache), cacheWhy(q.cache)) : "–"),
      fact("Earlier attempts", q.attempts ? el("span", { id: "attempts" }, q.attempts) : "–"),
      fact("Submitted", time(q.submittedAt)),
      fact("Finished", q.finishedAt ? time(q.finishedAt) : "–"),
      fact("Elapsed", duration(q.elapsedMs) || "–"),
      fact("Error", q.errorName ? el("code", {}, q.errorName) : "–"),
      fact("Transaction", q.transactionId || "–"),
      fact("Trace id", q.traceId ? el("code", { id: "trace-id" }, q.traceId) : "–"),
    ),
    el("h3", {}, "Estimate"),
    q.estimate ? estimateView(q.estimate) : el("p", { class: "hint", id: "estimate" }, "Routing asked for none."),
  );
}

load();
