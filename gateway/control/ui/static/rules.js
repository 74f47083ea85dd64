// Routing rules (GET /gateway/routing-rules): the rules in use with their order and fire counts;
// ADMIN edits the file (PUT /gateway/routing-rules, validated by the loader the gateway starts
// with: an invalid file is refused with its line) and anyone tries a rule set on a sample request
// (POST /gateway/routing-rules/test), which shows the query estimate the rules read (queryEstimate).
import { api, el, estimateView, mayChange, notice, replace } from "/assets/app.js";

const editor = document.getElementById("rules-text");
let saved = "";

function flatten(rules, depth = 0) {
  return rules.flatMap((rule) => [{ rule, depth }, ...flatten(rule.composingRules || [], depth + 1)]);
}

function code(lines) {
  return el("code", {}, Array.isArray(lines) ? lines.join("\n") : lines || "");
}

async function load() {
  const rules = await api("GET", "/gateway/routing-rules");
  if (!rules.enabled || rules.type !== "FILE") {
    replace("rules-status", el("p", {}, rules.enabled ? `Routing by an external service: ${rules.url}` : "Routing rules are off: queries go by the X-Trino-Routing-Group header, else to the default group."));
    replace(document.querySelector("#rules tbody"));
    return;
  }
  replace("rules-status", rules.lastError ? el("p", { class: "error" }, `The last change of the file did not load: ${rules.lastError}`) : null);
  const rows = flatten(rules.rules).map(({ rule, depth }, i) =>
    el(
      "tr",
      { id: `rule-${rule.name}`, dataset: { rule: rule.name } },
      el("td", { class: "num" }, depth ? "" : i + 1),
      el("th", { scope: "row", class: depth ? "nested" : undefined }, rule.name, rule.description ? el("div", { class: "hint" }, rule.description) : null),
      el("td", { class: "num" }, rule.priority >= 2147483647 ? "last" : rule.priority),
      el("td", {}, rule.compositeRuleType ? el("em", {}, rule.compositeRuleType) : code(rule.condition)),
      el("td", {}, code(rule.actions)),
      el("td", { class: "num fired" }, rule.fired ?? "–"),
    ),
  );
  replace(document.querySelector("#rules tbody"), rows.length ? rows : el("tr", {}, el("td", { colspan: 6 }, "The file holds no rule.")));
  document.getElementById("rules-path").textContent = `File: ${rules.path || rules.file}`;
  if (editor.value === saved) editor.value = rules.text ?? "";
  saved = rules.text ?? "";
  document.getElementById("editor-section").hidden = false;
  document.getElementById("try-section").hidden = false;
}

function showError(error) {
  const box = document.getElementById("editor-error");
  const line = error.body && error.body.line;
  box.replaceChildren(line ? `Line ${line}: ${error.message}` : error.message);
  if (line) {
    const text = editor.value.split("\n")[line - 1];
    if (text !== undefined) box.append(el("pre", {}, text));
    selectLine(line);
  }
  box.hidden = false;
}

function selectLine(line) {
  const lines = editor.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  editor.focus();
  editor.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

if (mayChange) {
  document.getElementById("editor").addEventListener("submit", async (event) => {
    event.preventDefault();
    document.getElementById("editor-error").hidden = true;
    try {
      await api("PUT", "/gateway/routing-rules", { text: editor.value });
      saved = editor.value;
      notice("Rules saved; they route new queries now.");
      await load();
    } catch (error) {
      showError(error);
    }
  });
  document.getElementById("rules-reset").addEventListener("click", () => {
    editor.value = saved;
    document.getElementById("editor-error").hidden = true;
  });
}

document.getElementById("try").addEventListener("submit", async (event) => {
  event.preventDefault();
  const f = event.target.elements;
  const headers = {};
  for (const line of f.headers.value.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const body = { text: editor.value, headers, user: f.user.value.trim() || null, sql: f.sql.value };
  try {
    const answer = await api("POST", "/gateway/routing-rules/test", body);
    replace(
      "try-result",
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Routing group"),
        el("dd", { id: "try-group" }, answer.routingGroup || "(the default group)"),
        el("dt", {}, "Decided by"),
        el("dd", {}, answer.rule ? el("code", {}, answer.rule) : answer.source),
        el("dt", {}, "Rules fired"),
        el("dd", {}, answer.fired.length ? answer.fired.join(", ") : "none"),
        answer.failed.length ? [el("dt", {}, "Rules failed"), el("dd", { class: "error" }, answer.failed.map(([r, e]) => `${r}: ${e}`).join("; "))] : null,
        el("dt", {}, "Estimate"),
        el("dd", {}, answer.estimate ? estimateView(answer.estimate, "try-estimate") : "no rule read queryEstimate"),
      ),
    );
  } catch (error) {
    replace("try-result", el("p", { class: "error" }, error.body && error.body.line ? `Line ${error.body.line}: ${error.message}` : error.message));
  }
});

load().catch((error) => notice(`Could not read the rules: ${error.message}`, "error"));
