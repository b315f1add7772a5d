// The live page: reads /api/analytics/real-time every few seconds and draws the figures
// as plain SVG. No library, no build step.
"use strict";

const REFRESH_MS = 3000;
const TYPES = [
  ["product_view", "views", "--view"],
  ["cart", "cart", "--cart"],
  ["purchase", "purchases", "--purchase"],
  ["search", "searches", "--search"],
];
const SVG = "http://www.w3.org/2000/svg";

// Per-type counts of past minutes (minute start in seconds → events object), fetched
// once per minute with window=1m; the current and the previous minute are fetched again
// at every refresh, since late arrivals still change them.
const minuteCache = new Map();
let timer = null;

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function size(svg) {
  const box = svg.viewBox.baseVal;
  return [box.width, box.height];
}

const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
function money(amount, currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency }).format(amount);
  } catch (e) {
    return amount.toFixed(2) + " " + currency;
  }
}
function percent(ratio) {
  return (ratio * 100).toFixed(1) + " %";
}
function clock(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}
function minuteLabel(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
}

function show(metric, text) {
  for (const node of document.querySelectorAll(`[data-metric="${metric}"]`)) node.textContent = text;
}

// Vertical bars per minute, stacked by series; `minutes` are {label, values: [..]}.
function stackedBars(svg, minutes, colors) {
  clear(svg);
  const [w, h] = size(svg);
  const left = 40, bottom = 20, top = 8;
  const max = Math.max(1, ...minutes.map((m) => m.values.reduce((a, b) => a + b, 0)));
  const plot = h - bottom - top;
  el("line", { x1: left, y1: h - bottom, x2: w, y2: h - bottom, class: "axis" }, svg);
  el("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, svg, integer.format(max));
  el("text", { x: left - 6, y: h - bottom, "text-anchor": "end" }, svg, "0");
  const slot = (w - left) / Math.max(1, minutes.length);
  minutes.forEach((m, i) => {
    let y = h - bottom;
    const x = left + i * slot + slot * 0.15;
    m.values.forEach((v, s) => {
      const height = (v / max) * plot;
      if (height > 0) {
        const bar = el("rect", { x, y: y - height, width: slot * 0.7, height, fill: colors[s], "data-value": v }, svg);
        el("title", {}, bar, `${m.label} ${TYPES[s][1]}: ${v}`);
      }
      y -= height;
    });
    if (minutes.length <= 20 || i % Math.ceil(minutes.length / 12) === 0) {
      el("text", { x: x + slot * 0.35, y: h - 5, "text-anchor": "middle" }, svg, m.label);
    }
  });
}

// An area and line of one value per minute.
function areaChart(svg, points, fill, format) {
  clear(svg);
  const [w, h] = size(svg);
  const left = 90, right = 20, bottom = 20, top = 8;
  const max = Math.max(1e-9, ...points.map((p) => p.value));
  const plot = h - bottom - top;
  const step = (w - left - right) / Math.max(1, points.length - 1);
  const xy = points.map((p, i) => [left + i * step, h - bottom - (p.value / max) * plot]);
  el("line", { x1: left, y1: h - bottom, x2: w, y2: h - bottom, class: "axis" }, svg);
  el("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, svg, format(max));
  if (xy.length) {
    const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
    el("polygon", { points: `${left},${h - bottom} ${line} ${xy[xy.length - 1][0]},${h - bottom}`, fill, "fill-opacity": 0.18 }, svg);
    el("polyline", { points: line, fill: "none", stroke: fill, "stroke-width": 2 }, svg);
    points.forEach((p, i) => {
      const dot = el("circle", { cx: xy[i][0], cy: xy[i][1], r: 2.5, fill, "data-value": p.value }, svg);
      el("title", {}, dot, `${p.label}: ${format(p.value)}`);
      if (points.length <= 20 || i % Math.ceil(points.length / 12) === 0) {
        el("text", { x: xy[i][0], y: h - 5, "text-anchor": "middle" }, svg, p.label);
      }
    });
  }
}

// Horizontal bars with a label and a value text; rows are {label, value, text, fill}.
function hbars(svg, rows, empty) {
  clear(svg);
  const [w, h] = size(svg);
  if (!rows.length) {
    el("text", { x: w / 2, y: h / 2, "text-anchor": "middle" }, svg, empty);
    return;
  }
  const labelWidth = 140, valueWidth = 120;
  const row = Math.min(30, h / rows.length);
  const max = Math.max(1e-9, ...rows.map((r) => r.value));
  rows.forEach((r, i) => {
    const y = i * row;
    el("text", { x: 0, y: y + row * 0.65 }, svg, r.label.length > 21 ? r.label.slice(0, 20) + "…" : r.label);
    const width = Math.max(1, (r.value / max) * (w - labelWidth - valueWidth));
    const bar = el("rect", { x: labelWidth, y: y + row * 0.15, width, height: row * 0.7, rx: 2, fill: r.fill, "data-value": r.value }, svg);
    el("title", {}, bar, `${r.label}: ${r.text}`);
    el("text", { x: labelWidth + width + 6, y: y + row * 0.65, class: "value-label", "data-label": r.label }, svg, r.text);
  });
}

async function getJson(url) {
  const answer = await fetch(url, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
  return answer.json();
}

// Events per type for each minute of the window, from window=1m answers.
async function perTypeMinutes(analytics) {
  const minutes = analytics.series.map((s) => Date.parse(s.minute) / 1000);
  const refresh = new Set(minutes.slice(-2));
  for (const m of minutes) {
    if (!minuteCache.has(m) || refresh.has(m)) {
      const to = new Date((m + 60) * 1000).toISOString();
      const one = await getJson(`/api/analytics/real-time?window=1m&to=${encodeURIComponent(to)}`);
      minuteCache.set(m, one.events);
    }
  }
  for (const m of minuteCache.keys()) if (m < minutes[0]) minuteCache.delete(m);
  return minutes.map((m) => ({ label: minuteLabel(m), values: TYPES.map(([t]) => minuteCache.get(m)[t] || 0) }));
}

function render(a, perType, answerMs) {
  const currency = a.revenue.currency;
  const total = TYPES.reduce((sum, [t]) => sum + a.events[t], 0);
  show("events_total", integer.format(total));
  show("unique_users", integer.format(a.unique_users));
  show("orders", integer.format(a.orders));
  show("revenue", money(a.revenue.amount, currency));
  show("average_order_value", money(a.average_order_value, currency));
  show("conversion_rate", percent(a.conversion_rate));
  show("abandonment_rate", percent(a.cart.abandonment_rate));
  show("sessions", integer.format(a.sessions ?? 0));
  show("currency", `(${currency})`);
  show("late_events", integer.format(a.late_events ?? 0));
  show("duplicates", integer.format(a.duplicates ?? 0));
  show("answer_ms", `${answerMs} ms`);
  show("window_range", `${clock(new Date(a.from))} – ${clock(new Date(a.to))}`);
  const busy = a.series.filter((s) => s.events > 0);
  show("newest_minute", busy.length ? minuteLabel(Date.parse(busy[busy.length - 1].minute) / 1000) : "no events in the window");
  show("updated", clock(new Date()));
  show("zero_result_searches", a.zero_result_searches.length
    ? a.zero_result_searches.map((q) => `${q.query} (${q.count})`).join(", ") : "none");

  const legend = document.getElementById("types-legend");
  legend.replaceChildren();
  for (const [t, label, c] of TYPES) {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color(c);
    item.append(swatch, `${label}: `);
    const count = document.createElement("b");
    count.dataset.metric = `events.${t}`;
    count.textContent = integer.format(a.events[t]);
    item.append(count);
    legend.append(item);
  }
  stackedBars(document.getElementById("chart-types"), perType, TYPES.map(([, , c]) => color(c)));
  areaChart(document.getElementById("chart-revenue"),
    a.series.map((s) => ({ label: minuteLabel(Date.parse(s.minute) / 1000), value: s.revenue })),
    color("--purchase"), (v) => money(v, currency));

  hbars(document.getElementById("chart-funnel"), [
    { label: "Product viewers", value: a.viewers ?? 0, text: integer.format(a.viewers ?? 0), fill: color("--view") },
    { label: "Cart adds", value: a.cart.adds, text: integer.format(a.cart.adds), fill: color("--cart") },
    { label: "Orders", value: a.orders, text: integer.format(a.orders), fill: color("--purchase") },
    { label: "Buyers", value: a.purchasers ?? 0, text: `${integer.format(a.purchasers ?? 0)} (${percent(a.conversion_rate)})`, fill: color("--purchase") },
  ], "no events yet");

  const variants = [];
  for (const [flag, byVariant] of Object.entries(a.experiments).sort()) {
    for (const [variant, v] of Object.entries(byVariant).sort()) {
      variants.push({ label: `${flag}: ${variant}`, value: v.conversion_rate,
        text: `${percent(v.conversion_rate)} of ${integer.format(v.users)}`, fill: color("--search") });
    }
  }
  hbars(document.getElementById("chart-experiments"), variants.slice(0, 6), "no experiments in the window");
  hbars(document.getElementById("chart-products"), a.top_products.slice(0, 7).map((p) => ({
    label: p.product_id, value: p.views, text: `${integer.format(p.views)} views · ${integer.format(p.purchases)} sold`, fill: color("--view"),
  })), "no product views in the window");
  hbars(document.getElementById("chart-searches"), a.top_searches.slice(0, 7).map((q) => ({
    label: q.query, value: q.count, text: integer.format(q.count), fill: color("--search"),
  })), "no searches in the window");
}

async function refresh() {
  const status = document.getElementById("status");
  const windowName = document.getElementById("window").value;
  try {
    const started = performance.now();
    const analytics = await getJson(`/api/analytics/real-time?window=${windowName}`);
    const answerMs = Math.round(performance.now() - started);
    const perType = await perTypeMinutes(analytics);
    render(analytics, perType, answerMs);
    document.body.dataset.to = analytics.to;
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    status.dataset.state = "ok";
    status.textContent = `live, every ${REFRESH_MS / 1000} s`;
  } catch (e) {
    status.dataset.state = "error";
    status.textContent = `not updated: ${e.message}`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.getElementById("window").addEventListener("change", () => {
  clearTimeout(timer);
  refresh();
});
refresh();
