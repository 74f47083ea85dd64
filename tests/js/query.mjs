// Runs one statement with the Trino JavaScript client and prints what the client saw, as JSON:
//   node query.mjs <server> <user> <sql> [--session k=v] [--cancel-at-once]
// {"ids": [...ids the pages carried], "states": [...], "columns": [...the first page's with columns],
//  "rows": [...], "error": {...} | null, "cancelled": bool}
// The client's iterator yields only pages with rows (and the last); the submission's own answer is
// read from it too, as the first page seen: its id is what --cancel-at-once cancels (trino.cancel).
import { Trino } from "trino-client";

const [server, user, sql, ...flags] = process.argv.slice(2);
const session = {};
let cancelAtOnce = false;
for (let i = 0; i < flags.length; i++) {
  if (flags[i] === "--session") {
    const [key, value] = flags[++i].split("=");
    session[key] = value;
  } else if (flags[i] === "--cancel-at-once") {
    cancelAtOnce = true;
  }
}

const trino = Trino.create({ server, session, extraHeaders: { "X-Trino-User": user } });
const seen = { ids: [], states: [], columns: null, rows: [], error: null, cancelled: false };
try {
  const pages = await trino.query(sql);
  const submitted = pages.iter.queryResult;
  seen.ids.push(submitted.id);
  seen.states.push(submitted.stats?.state);
  if (cancelAtOnce) {
    await trino.cancel(submitted.id);
    seen.cancelled = true;
  }
  for await (const page of pages) {
    seen.ids.push(page.id);
    seen.states.push(page.stats?.state);
    if (page.error) seen.error = page.error;
    if (page.columns && seen.columns === null) seen.columns = page.columns;
    for (const row of page.data ?? []) seen.rows.push(row);
  }
} catch (error) {
  seen.error = { message: String(error?.message ?? error) };
}
process.stdout.write(JSON.stringify(seen) + "\n");
