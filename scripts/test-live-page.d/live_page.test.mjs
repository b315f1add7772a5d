// Drives the processor's live page in headless Chromium (Playwright, Debian's chromium):
// the charts render, the numbers shown are the API's, and they change as new events
// arrive through the edge agent. Run by scripts/test-live-page, which starts the agent
// and the processor and passes:
//   PLAYWRIGHT_DIR  folder holding node_modules/playwright-core
//   PROCESSOR_URL   http://127.0.0.1:PORT of the processor
//   AGENT_URL       http://127.0.0.1:PORT of the edge agent
//   OUT             folder for the screenshots and the browser's profile
import { createRequire } from "node:module";
import { mkdtempSync } from "node:fs";
import path from "node:path";

const { chromium } = createRequire(path.join(process.env.PLAYWRIGHT_DIR, "/"))("playwright-core");
const processor = process.env.PROCESSOR_URL;
const agent = process.env.AGENT_URL;
const out = process.env.OUT;
const WINDOW = "15m";
const TYPES = ["product_view", "cart", "purchase", "search"];

function fail(message) {
  throw new Error(message);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function api() {
  const answer = await fetch(`${processor}/api/analytics/real-time?window=${WINDOW}`);
  if (!answer.ok) fail(`the API answered ${answer.status}`);
  return answer.json();
}
const total = (a) => TYPES.reduce((sum, t) => sum + a.events[t], 0);

// Until two answers a few seconds apart agree: the processor has counted everything.
async function settled() {
  let before = JSON.stringify(await api());
  for (let i = 0; i < 30; i++) {
    await sleep(2500);
    const now = await api();
    if (JSON.stringify(now) === before) return now;
    before = JSON.stringify(now);
  }
  fail("the analytics never settled");
}

// NDJSON of `users` sessions: a search, a view, a cart add, a purchase every other user.
function traffic(prefix, users) {
  const lines = [];
  for (let u = 1; u <= users; u++) {
    const base = { user_id: `${prefix}-${u}`, session_id: `${prefix}-s-${u}`,
      context: { experiments: { checkout_v2: u % 2 ? "treatment" : "control" } } };
    const p = 1 + (u % 5);
    lines.push({ type: "search", ...base, query: u % 3 ? "rain jacket" : "headlamp", results_count: u % 4 });
    lines.push({ type: "product_view", ...base, product_id: `sku-${p}`, price: 20 + p, currency: "EUR" });
    lines.push({ type: "cart", ...base, action: "add", product_id: `sku-${p}`, quantity: 1 });
    if (u % 2) {
      lines.push({ type: "purchase", ...base, order_id: `${prefix}-o-${u}`, currency: "EUR",
        items: [{ product_id: `sku-${p}`, quantity: 1, price: 20 + p }], total: 20 + p });
    }
  }
  return lines.map((l) => JSON.stringify(l)).join("\n") + "\n";
}

async function send(prefix, users) {
  const body = traffic(prefix, users);
  const answer = await fetch(`${agent}/api/events/batch`, {
    method: "POST", body, headers: { "content-type": "application/x-ndjson", "ingest-ack": "delivered" },
  });
  const result = await answer.json();
  const sent = body.trim().split("\n").length;
  if (result.accepted !== sent) fail(`the agent accepted ${JSON.stringify(result)} of ${sent} events`);
  return sent;
}

const number = (text) => Number(String(text).replace(/[^0-9.\-]/g, ""));

// What the page shows, read from its DOM.
async function shown(page) {
  return page.evaluate(() => {
    const text = (metric) => document.querySelector(`[data-metric="${metric}"]`)?.textContent ?? null;
    const values = (selector) => [...document.querySelectorAll(selector)].map((n) => Number(n.getAttribute("data-value")));
    return {
      refreshes: Number(document.body.dataset.refreshes || 0),
      status: document.getElementById("status").dataset.state,
      events_total: text("events_total"), orders: text("orders"), unique_users: text("unique_users"),
      revenue: text("revenue"), conversion_rate: text("conversion_rate"), sessions: text("sessions"),
      types: Object.fromEntries(["product_view", "cart", "purchase", "search"].map((t) => [t, text(`events.${t}`)])),
      typeBars: values("#chart-types rect"),
      revenuePoints: values("#chart-revenue circle"),
      revenueLine: document.querySelectorAll("#chart-revenue polyline").length,
      funnel: values("#chart-funnel rect"),
      experiments: [...document.querySelectorAll("#chart-experiments .value-label")].map((n) => [n.dataset.label, n.textContent]),
      products: [...document.querySelectorAll("#chart-products .value-label")].map((n) => [n.dataset.label, n.textContent]),
      searches: [...document.querySelectorAll("#chart-searches .value-label")].map((n) => [n.dataset.label, n.textContent]),
      updated: text("updated"),
    };
  });
}

// The page after its next complete refresh.
async function nextRefresh(page) {
  const before = (await shown(page)).refreshes;
  await page.waitForFunction((n) => Number(document.body.dataset.refreshes || 0) > n, before, { timeout: 20000 });
  return shown(page);
}

function compare(view, a, when) {
  const problems = [];
  const expect = (what, got, want) => { if (got !== want) problems.push(`${what}: page ${got}, API ${want}`); };
  expect("events", number(view.events_total), total(a));
  expect("orders", number(view.orders), a.orders);
  expect("unique users", number(view.unique_users), a.unique_users);
  expect("revenue", number(view.revenue), Math.round(a.revenue.amount * 100) / 100);
  expect("conversion (%)", number(view.conversion_rate), Number((a.conversion_rate * 100).toFixed(1)));
  for (const t of TYPES) expect(`events.${t}`, number(view.types[t]), a.events[t]);
  // The chart of events per type per minute adds up to the window's events.
  expect("sum of the per-minute bars", view.typeBars.reduce((s, v) => s + v, 0), total(a));
  expect("revenue points", view.revenuePoints.length, a.series.length);
  expect("revenue per minute", view.revenuePoints.reduce((s, v) => s + v, 0).toFixed(2),
    a.series.reduce((s, m) => s + m.revenue, 0).toFixed(2));
  expect("funnel bars", view.funnel.join(","), [a.viewers, a.cart.adds, a.orders, a.purchasers].join(","));
  expect("top product", view.products[0]?.[0], a.top_products[0]?.product_id);
  expect("top product views", number(view.products[0]?.[1].split("·")[0]), a.top_products[0]?.views);
  expect("top search", view.searches[0]?.[0], a.top_searches[0]?.query);
  expect("top search count", number(view.searches[0]?.[1]), a.top_searches[0]?.count);
  const variants = Object.values(a.experiments).reduce((n, v) => n + Object.keys(v).length, 0);
  expect("experiment variants", view.experiments.length, Math.min(6, variants));
  if (problems.length) fail(`${when}: the page does not show the API's figures:\n  ${problems.join("\n  ")}`);
}

const profile = mkdtempSync(path.join(out, "chromium-profile-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 1400 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });

  const first = await send("live-a", 30);
  const before = await settled();
  if (total(before) < first) fail(`the processor counted ${total(before)} of ${first} events`);
  await page.goto(`${processor}/`);
  await page.waitForFunction(() => Number(document.body.dataset.refreshes || 0) >= 1, null, { timeout: 30000 });
  let view = await nextRefresh(page);
  if (view.status !== "ok") fail(`the page's status is ${view.status}`);
  // The charts are drawn.
  if (!view.typeBars.some((v) => v > 0)) fail("no bar in the chart of events per type");
  if (view.revenueLine !== 1 || !view.revenuePoints.some((v) => v > 0)) fail("no revenue line");
  if (view.funnel.length !== 4) fail(`the funnel has ${view.funnel.length} bars`);
  if (view.experiments.length < 2) fail("the experiment variants are missing");
  if (!view.products.length || !view.searches.length) fail("top products or searches are missing");
  compare(view, before, "after the first events");
  await page.screenshot({ path: path.join(out, "live-page-1.png"), fullPage: true });

  // New events: the page follows.
  const second = await send("live-b", 20);
  let after = await settled();
  if (total(after) < total(before) + second) fail(`the processor counted ${total(after) - total(before)} of ${second} new events`);
  view = await nextRefresh(page);
  if (number(view.events_total) <= total(before)) fail(`the page still shows ${view.events_total} events`);
  if (number(view.orders) <= before.orders) fail(`the page still shows ${view.orders} orders`);
  compare(view, after, "after the new events");
  await page.screenshot({ path: path.join(out, "live-page-2.png"), fullPage: true });

  // Another window, chosen on the page.
  await page.selectOption("#window", "1h");
  await page.waitForFunction(() => document.querySelectorAll("#chart-revenue circle").length === 60, null, { timeout: 20000 });
  if (errors.length) fail(`the page reported errors:\n  ${errors.join("\n  ")}`);
  console.log(`live page: charts drawn, ${number(view.events_total)} events and ${view.orders} orders as the API says, ` +
    `${total(after) - total(before)} new events followed within a refresh; screenshots in ${out}`);
} finally {
  await context.close();
}
