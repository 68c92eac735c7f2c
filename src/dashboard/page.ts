/**
 * The dashboard page: one HTML document with inline CSS and JS (no framework,
 * no CDN, no build step), so it ships inside the binary as a string. The
 * overview is rendered on the server, so the summary reads without JS; the
 * script then polls `/_/api/*` and renders every tab.
 *
 * Everything that comes from requests (hosts, paths, reasons, labels, rule
 * names) is escaped here and set with `textContent` / text nodes in the
 * script, never parsed as HTML.
 *
 * @module
 */
import type { Stats } from "../audit/read.ts";
import type { DenialGroups } from "./api.ts";
import { formatUsd } from "../util/usd.ts";

/** Escape text for HTML element content and quoted attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmtN(n: number): string {
  return n.toLocaleString("en-US");
}

const fmtUsd = formatUsd;

function fmtTs(ts: number): string {
  return new Date(ts).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

/** What the page shows before its script runs. */
export interface PageInput {
  nonce: string;
  version: string;
  /** Overview of the last 24 h (rendered server-side). */
  stats: Stats;
  /** Identical denials of the same 24 h, grouped. */
  denials: DenialGroups;
  /** Where the audit lives (shown in the footer). */
  auditPath: string;
  /** Policy file in force. */
  policyFile: string;
}

const CSS = `
:root{color-scheme:light dark;--bg:#f7f7f5;--fg:#1d1f21;--mute:#6b7075;--line:#e1e2de;--card:#fff;
--accent:#2f6fde;--allow:#2e8b57;--deny:#c9352b;--would:#c77c02;--err:#8a4fbf;--log:#4a7fa8;--spend:#d08a00;
--hover:#f0f3fa;--mono:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
@media (prefers-color-scheme:dark){:root{--bg:#15171a;--fg:#e4e6e8;--mute:#9aa0a6;--line:#2b2f34;--card:#1c1f23;
--accent:#6ea1ff;--hover:#23282f}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
font-variant-numeric:tabular-nums}
header{display:flex;align-items:center;flex-wrap:wrap;gap:6px 18px;padding:10px 20px;border-bottom:1px solid var(--line);background:var(--card);
position:sticky;top:0;z-index:2}
header .brand{font-weight:650;font-size:15px;letter-spacing:.2px}
header .brand small{font-weight:400;color:var(--mute);margin-left:6px}
nav{display:flex;flex-wrap:wrap;gap:2px}
nav a{color:var(--mute);text-decoration:none;padding:5px 10px;border-radius:6px}
nav a:hover{background:var(--hover);color:var(--fg)}
nav a.active{background:var(--hover);color:var(--fg);font-weight:600}
#live{margin-left:auto;color:var(--mute);font-size:12px;white-space:nowrap}
#live::before{content:"";display:inline-block;width:7px;height:7px;border-radius:50%;background:var(--mute);margin-right:6px;
vertical-align:1px}
#live.on::before{background:var(--allow)}
#live.bad::before{background:var(--deny)}
main{padding:16px 20px 40px;max-width:1400px;margin:0 auto}
.js section.tab{display:none}
html:not(.js) section.tab:not(#tab-overview),html:not(.js) nav,html:not(.js) #range{display:none}
.js section.tab.active{display:block}
.nojs-only{color:var(--mute)}
.js .nojs-only{display:none}
#banner{display:none;margin:0 0 12px;padding:8px 12px;border-radius:6px;background:#fdecea;color:#8a1c12;border:1px solid #f3c1bc}
#banner.show{display:block}
h2{font-size:13px;font-weight:600;margin:0 0 8px;color:var(--mute);text-transform:uppercase;letter-spacing:.5px}
.toolbar{display:flex;align-items:center;gap:8px;margin-bottom:12px;flex-wrap:wrap}
.seg{display:inline-flex;border:1px solid var(--line);border-radius:6px;overflow:hidden}
.seg button{border:0;background:var(--card);color:var(--mute);padding:4px 10px;cursor:pointer;font:inherit}
.seg button+button{border-left:1px solid var(--line)}
.seg button.active{background:var(--accent);color:#fff}
.cards{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:10px;margin-bottom:14px}
a.card{color:inherit;text-decoration:none}a.card:hover{border-color:var(--accent)}
.card.tun .v{color:var(--log)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.card .k{color:var(--mute);font-size:11px;text-transform:uppercase;letter-spacing:.5px}
.card .v{font-size:22px;font-weight:600;margin-top:2px}
.card.allow .v{color:var(--allow)}.card.deny .v{color:var(--deny)}.card.would .v{color:var(--would)}
.card.err .v{color:var(--err)}.card.spend .v{color:var(--spend)}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px;min-width:0;overflow-x:auto}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin-top:12px}
.grid .wide{grid-column:1/-1}
@media (max-width:900px){.grid{grid-template-columns:1fr}.cards{grid-template-columns:repeat(4,minmax(0,1fr))}}
@media (max-width:600px){header{padding:8px 10px;gap:4px 10px}main{padding:10px 8px 30px}
td.reason{min-width:220px}td.mono{white-space:nowrap}td.clip{max-width:240px}
.cards{grid-template-columns:repeat(2,minmax(0,1fr));gap:8px}.card .v{font-size:18px}
form.filters label{flex:1 1 130px}form.filters input,form.filters select{width:100%}
dl.kv{grid-template-columns:1fr}dl.kv dd{margin-bottom:6px}}
#chart{width:100%;height:180px;display:block}
#chart .bar{fill:var(--accent);opacity:.55}
#chart .bar-d{fill:var(--deny);opacity:.85}
#chart .line{fill:none;stroke:var(--spend);stroke-width:2}
#chart .dot{fill:var(--spend)}
#chart .axis{stroke:var(--mute);opacity:.5}
#chart .grid{stroke:var(--line);stroke-dasharray:3 3}
#chart .pt{fill:var(--accent)}
#chart .pt-d{fill:var(--deny)}
#chart .empty{fill:var(--mute);font-size:12px}
#chart text{fill:var(--mute);font-size:10px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;color:var(--mute);font-size:12px;margin-top:4px}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend .l-req{background:var(--accent);opacity:.55}.legend .l-den{background:var(--deny)}.legend .l-sp{background:var(--spend)}
table{width:100%;border-collapse:collapse}
th{text-align:left;font-weight:600;color:var(--mute);font-size:11px;text-transform:uppercase;letter-spacing:.4px;
padding:5px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
td.num,th.num{text-align:right}
td.mono{font-family:var(--mono);font-size:12px}
td.clip{max-width:300px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
td.reason{max-width:420px;overflow-wrap:anywhere}
tr.click{cursor:pointer}
tr.click:hover,tr.click:focus{background:var(--hover);outline:none}
tr.fresh{animation:fresh 2s ease-out}
tr.over td.num{color:var(--deny)}
@keyframes fresh{from{background:rgba(47,111,222,.18)}to{background:transparent}}
.empty{color:var(--mute);padding:10px 8px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;font-weight:600;line-height:18px;
border:1px solid currentColor;white-space:nowrap}
.b-allow{color:var(--allow)}.b-log{color:var(--log)}.b-deny{color:var(--deny)}.b-would_deny{color:var(--would)}
.b-error{color:var(--err)}.b-challenge{color:var(--mute)}
.muted{color:var(--mute)}
form.filters{display:flex;gap:8px;flex-wrap:wrap;align-items:end;margin-bottom:10px}
form.filters label{display:flex;flex-direction:column;gap:2px;font-size:11px;color:var(--mute)}
input,select{font:inherit;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:6px;padding:4px 7px}
input{width:150px}
input[type=datetime-local]{width:190px}
a.btn{display:inline-block;text-decoration:none;font:inherit;border:1px solid var(--line);background:var(--card);
color:var(--fg);border-radius:6px;padding:4px 10px}
.exports{display:flex;gap:8px;align-items:center;margin-left:auto;flex-wrap:wrap}
th[data-sort]{cursor:pointer;user-select:none}
th[data-sort]:hover{color:var(--fg)}
th[aria-sort=ascending]::after{content:" ▲"}
th[aria-sort=descending]::after{content:" ▼"}
td.count{font-weight:600;white-space:nowrap}
input[name=search]{width:200px}
button.btn{font:inherit;border:1px solid var(--line);background:var(--card);color:var(--fg);border-radius:6px;padding:4px 10px;
cursor:pointer}
button.btn:disabled{opacity:.45;cursor:default}
.pager{display:flex;align-items:center;gap:8px;margin-top:10px;color:var(--mute)}
dialog{border:1px solid var(--line);border-radius:10px;padding:0;width:min(900px,94vw);max-height:88vh;background:var(--card);
color:var(--fg)}
dialog::backdrop{background:rgba(0,0,0,.35)}
dialog .head{display:flex;align-items:center;gap:10px;padding:12px 16px;border-bottom:1px solid var(--line);position:sticky;
top:0;background:var(--card)}
dialog .head .title{font-weight:600;overflow-wrap:anywhere}
dialog .head button{margin-left:auto}
dialog .body{padding:12px 16px 18px}
dl.kv{display:grid;grid-template-columns:150px 1fr;gap:4px 12px;margin:0 0 14px}
dl.kv dt{color:var(--mute)}
dl.kv dd{margin:0;overflow-wrap:anywhere}
footer{color:var(--mute);font-size:12px;margin-top:22px;overflow-wrap:anywhere}
code{font-family:var(--mono);font-size:12px}
`;

// The client. Plain ES2020; every value from the API reaches the DOM as a text
// node or through textContent / setAttribute of a fixed attribute name.
const JS = String.raw`
"use strict";
document.documentElement.classList.add("js");
const $ = (s, root) => (root || document).querySelector(s);
const $$ = (s, root) => Array.from((root || document).querySelectorAll(s));
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) for (const k of Object.keys(props)) {
    const v = props[k];
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
    else if (k === "title" || k === "href" || k === "tabindex" || k === "colspan" || k === "value" ||
      k === "type" || k === "aria-label") e.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : String(kid));
  }
  return e;
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k of Object.keys(attrs || {})) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = text;
  return e;
}
const nf = new Intl.NumberFormat("en-US");
const fmtN = (n) => nf.format(n || 0);
// The server's formatter, so both print the same amounts (src/util/usd.ts).
const fmtUsd = (n) => (${formatUsd.toString()})(n || 0);
const pad = (n) => String(n).padStart(2, "0");
function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts), now = new Date();
  const hms = pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  if (d.toDateString() === now.toDateString()) return hms;
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hms;
}
function ago(ts) {
  if (!ts) return "never";
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.round(s / 60) + "m ago";
  if (s < 86400) return Math.round(s / 3600) + "h ago";
  return Math.round(s / 86400) + "d ago";
}
const LABEL = { allow: "allow", log: "log", deny: "deny", would_deny: "would deny", error: "error", challenge: "407 challenge" };
const badge = (d) => el("span", { class: "badge b-" + d, text: LABEL[d] || d });
const hostPort = (r) => (r.host.includes(":") ? "[" + r.host + "]" : r.host) +
  ((r.scheme === "http" && r.port === 80) || (r.scheme === "https" && r.port === 443 && r.path !== null) ? "" : ":" + r.port);
const target = (r) => hostPort(r) + (r.path || "");
// A proxy.auth session is named by its label: shown once, not as "ci · ci".
const who = (session, label) => (label && label !== session ? label + " · " : "") + session;
function td(v, cls, title) { return el("td", { class: cls, title: title }, v); }
function emptyRow(tbody, cols, text) {
  tbody.replaceChildren(el("tr", null, el("td", { class: "empty", colspan: cols, text: text })));
}

// --- state, routing ------------------------------------------------------------
const state = { tab: "overview", hours: 24, filters: {}, offset: 0, limit: 50, seen: new Set(), busy: false, stats: null };
// Every filter of /_/api/audit the table offers; the hash, the API query and the export links carry them alike.
const FILTERS = ["host", "decision", "session", "rule", "model", "policy", "status", "tunnels", "search", "since", "until", "sort"];
const FORM_FILTERS = ["host", "decision", "session", "rule", "model", "policy", "status", "tunnels", "search"];
const PRESETS = ["15m", "1h", "24h", "7d"];
// datetime-local speaks the browser's local time; the API gets ms since the epoch.
function toLocalInput(v) {
  if (!v) return "";
  const d = new Date(/^\d+$/.test(v) ? Number(v) : v);
  if (isNaN(d.getTime())) return "";
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
}
function fromLocalInput(v) {
  if (!v) return "";
  const t = new Date(v).getTime();
  return isNaN(t) ? "" : String(t);
}
function fillForm(f) {
  const form = $("#audit-filters");
  for (const k of FORM_FILTERS) form.elements[k].value = f[k] || "";
  const preset = f.since && !f.until && PRESETS.includes(f.since);
  form.elements.range.value = preset ? f.since : (f.since || f.until) ? "custom" : "";
  form.elements.since.value = preset ? "" : toLocalInput(f.since);
  form.elements.until.value = toLocalInput(f.until);
}
function readForm() {
  const form = $("#audit-filters");
  const f = {};
  for (const k of FORM_FILTERS) { const v = form.elements[k].value.trim(); if (v) f[k] = v; }
  const range = form.elements.range.value;
  if (PRESETS.includes(range)) f.since = range;
  else if (range === "custom") {
    const a = fromLocalInput(form.elements.since.value), b = fromLocalInput(form.elements.until.value);
    if (a) f.since = a;
    if (b) f.until = b;
  }
  if (state.filters.sort) f.sort = state.filters.sort;
  return f;
}
function readHash() {
  const h = location.hash.replace(/^#/, "");
  const q = h.indexOf("?");
  const tab = (q < 0 ? h : h.slice(0, q)) || "overview";
  state.tab = ["overview", "audit", "rules", "sessions", "budgets", "findings"].includes(tab) ? tab : "overview";
  if (state.tab === "audit") {
    const p = new URLSearchParams(q < 0 ? "" : h.slice(q + 1));
    const f = {};
    for (const k of FILTERS) if (p.get(k)) f[k] = p.get(k);
    if (JSON.stringify(f) !== JSON.stringify(state.filters)) { state.offset = 0; state.seen = new Set(); }
    state.filters = f;
    state.offset = Number(p.get("offset") || 0) || 0;
    fillForm(f);
    renderSortHeads();
    renderExports();
  }
  for (const a of $$("nav a")) a.classList.toggle("active", a.dataset.tab === state.tab);
  for (const s of $$("section.tab")) s.classList.toggle("active", s.id === "tab-" + state.tab);
}
function auditLink(f) {
  const p = new URLSearchParams();
  for (const k of FILTERS) if (f[k]) p.set(k, f[k]);
  const s = p.toString();
  return "#audit" + (s ? "?" + s : "");
}
function go(f) { location.hash = auditLink(f); }

// --- fetching ------------------------------------------------------------------
async function api(path) {
  const res = await fetch(path, { headers: { accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new Error((body && body.reason) || ("HTTP " + res.status));
    err.status = res.status;
    throw err;
  }
  return body;
}
function live(ok, text) {
  const l = $("#live");
  l.className = ok ? "on" : "bad";
  l.textContent = text;
}
function banner(text) {
  const b = $("#banner");
  b.textContent = text || "";
  b.classList.toggle("show", !!text);
}

// --- overview ------------------------------------------------------------------
function renderOverview(s) {
  const t = s.totals;
  const set = (k, v) => { $("[data-k=" + k + "]").textContent = v; };
  set("requests", fmtN(t.requests));
  set("allowed", fmtN(t.allow + t.log));
  set("denied", fmtN(t.deny));
  set("would", fmtN(t.would_deny));
  set("errors", fmtN(t.error));
  set("spend", fmtUsd(t.spend_usd));
  set("tunnels", fmtN(t.tunnels));
  state.stats = s;
  renderChart(s);
  const hosts = $("#top-hosts tbody");
  if (!s.top_hosts.length) emptyRow(hosts, 3, "No requests in this range.");
  else hosts.replaceChildren(...s.top_hosts.map((h) =>
    el("tr", { class: "click", tabindex: 0, "data-host": h.host, onclick: () => go({ host: h.host }) },
      td(h.host, "mono clip", h.host), td(fmtN(h.requests), "num"),
      td(h.deny + h.would_deny ? fmtN(h.deny + h.would_deny) : "", "num"))));
  renderDenials(s.denial_groups);
  const rules = $("#top-rules tbody");
  if (!s.top_denied_rules.length) emptyRow(rules, 3, "No rule denied anything.");
  else rules.replaceChildren(...s.top_denied_rules.map((r) =>
    el("tr", { class: r.rule === null ? "" : "click", tabindex: 0, onclick: r.rule === null ? null : () => go({ rule: r.rule }) },
      td(r.rule === null ? "(default)" : r.rule, "mono"), td(fmtN(r.deny + r.would_deny), "num"),
      td(ago(r.last_ts), "muted"))));
  const models = $("#spend-models tbody");
  if (!s.spend_by_model.length) emptyRow(models, 5, "No LLM calls in this range.");
  else models.replaceChildren(...s.spend_by_model.map((m) =>
    el("tr", null, td(m.model, "mono"), td(m.provider || "", "muted"), td(fmtN(m.requests), "num"),
      td(fmtN(m.input_tokens) + " / " + fmtN(m.output_tokens), "num"), td(fmtUsd(m.cost_usd), "num"))));
  const sess = $("#spend-sessions tbody");
  if (!s.spend_by_session.length) emptyRow(sess, 3, "No LLM spend in this range.");
  else sess.replaceChildren(...s.spend_by_session.map((x) =>
    el("tr", { class: x.session === null ? "" : "click", tabindex: 0, onclick: x.session === null ? null : () => go({ session: x.session }) },
      td(x.session === null ? "(no session)" : who(x.session, x.label), "mono clip"),
      td(fmtN(x.requests), "num"), td(fmtUsd(x.cost_usd), "num"))));
}
// The fleet view: every external backend (Redis state, PostgreSQL audit, streams) and how it is doing.
function renderBackends(h) {
  const tb = $("#backends tbody");
  const list = h.backends || [];
  if (!list.length) return emptyRow(tb, 9, "None: limits count in this process and the audit is a local SQLite file.");
  tb.replaceChildren(...list.map((b) => el("tr", { class: b.up ? "" : "over", "data-backend": b.name + "/" + b.kind },
    td(b.name, "mono"), td(b.kind, "mono"), td(b.url, "mono clip", b.url),
    td(b.up ? (b.mode ? "up · " + b.mode : "up") : "down" + (b.mode ? " · " + b.mode : "")),
    td(b.latency_ms === null ? "—" : b.latency_ms.toFixed(1) + " ms", "num"), td(fmtN(b.errors), "num"),
    td(fmtN(b.queued), "num"), td(fmtN(b.dropped), "num"), td(b.last_error || "", "reason clip", b.last_error || ""))));
}
// Identical denials (decision, rule, policy, reason, host) are one line: count, latest time, latest request.
function renderDenials(g) {
  const den = $("#recent-denials tbody");
  const before = state.seenDenials;
  state.seenDenials = new Set(g.groups.map((d) => d.last_id));
  $("#denials-note").textContent = g.grouped < g.denials
    ? "grouped over the latest " + fmtN(g.grouped) + " of " + fmtN(g.denials) + " denials" : "";
  if (!g.groups.length) return emptyRow(den, 6, "Nothing denied in this range.");
  den.replaceChildren(...g.groups.map((d) => {
    const f = { host: d.host, decision: d.decision };
    if (d.rule !== null) f.rule = d.rule;
    const tr = el("tr", { class: "click", tabindex: 0, "data-id": d.last_id, "data-count": String(d.count),
      title: "Latest of " + fmtN(d.count) + "; click to list them", onclick: () => go(f) },
      td(fmtTime(d.last_ts), "muted", new Date(d.last_ts).toISOString()), td("×" + fmtN(d.count), "num count"),
      td(badge(d.decision)), td(d.method + " " + target(d), "mono clip", d.method + " " + target(d)),
      td(d.rule === null ? "(default)" : d.rule, "mono clip"), td(d.reason, "reason"));
    if (before && !before.has(d.last_id)) tr.classList.add("fresh");
    return tr;
  }));
}
const STEPS = [60e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 2 * 86400e3];
function niceCeil(v) {
  if (v <= 5) return Math.max(1, Math.ceil(v));
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
// The chart is drawn in CSS pixels (its box's width), so text never stretches; bars sit at their
// bucket's time, requests on the left axis, and spend adds up from the range's start to the total
// the Spend card shows, on the right axis.
function renderChart(s) {
  const c = $("#chart");
  const W = Math.max(240, Math.round(c.getBoundingClientRect().width) || 800), H = 180;
  const L = 40, R = 58, T = 12, B = 22;
  c.setAttribute("viewBox", "0 0 " + W + " " + H);
  const pts = s.buckets.points, size = s.buckets.size_ms;
  const x0 = s.since, x1 = s.until;
  const x = (ts) => L + (W - L - R) * Math.min(1, Math.max(0, (ts - x0) / (x1 - x0)));
  const maxReq = niceCeil(Math.max(0, ...pts.map((p) => p.requests)));
  const y = (v) => T + (H - T - B) * (1 - v / maxReq);
  const kids = [];
  for (const v of maxReq >= 2 ? [0, maxReq / 2, maxReq] : [0, maxReq]) {
    kids.push(svg("line", { class: v ? "grid" : "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    if (Number.isInteger(v)) kids.push(svg("text", { x: L - 6, y: y(v) + 3, "text-anchor": "end" }, fmtN(v)));
  }
  const busy = pts.filter((p) => p.requests > 0);
  const sparse = busy.length <= 12;
  for (const p of busy) {
    const a = x(p.ts), b = x(p.ts + size);
    const w = Math.max(2, b - a - 1), mid = (a + b) / 2;
    const g = svg("g", { class: "bucket" });
    g.append(svg("title", {}, fmtTime(p.ts) + "–" + fmtTime(p.ts + size) + ": " + fmtN(p.requests) + " requests, " +
      fmtN(p.deny + p.would_deny) + " denied, " + fmtUsd(p.spend_usd) + " spent"));
    const hr = Math.max(2, H - B - y(p.requests));
    g.append(svg("rect", { class: "bar", x: mid - w / 2, y: H - B - hr, width: w, height: hr }));
    const dn = p.deny + p.would_deny;
    if (dn) {
      const hd = Math.max(2, H - B - y(dn));
      g.append(svg("rect", { class: "bar-d", x: mid - w / 2, y: H - B - hd, width: w, height: hd }));
    }
    // A few requests in a wide range are thin slivers: mark each bucket with a point too.
    if (sparse) g.append(svg("circle", { class: dn === p.requests ? "pt-d" : "pt", cx: mid, cy: H - B - hr, r: 3 }));
    kids.push(g);
  }
  const total = pts.reduce((n, p) => n + p.spend_usd, 0);
  if (total > 0) {
    const ys = (v) => T + (H - T - B) * (1 - v / total);
    let run = 0;
    const d = ["M" + x(x0).toFixed(1) + "," + ys(0).toFixed(1)];
    for (const p of pts) {
      if (!p.spend_usd) continue;
      d.push("H" + x(p.ts + size / 2).toFixed(1));
      run += p.spend_usd;
      d.push("V" + ys(run).toFixed(1));
    }
    d.push("H" + x(x1).toFixed(1));
    kids.push(svg("path", { class: "line", d: d.join(" ") }));
    kids.push(svg("text", { x: W - R + 4, y: ys(total) + 3 }, fmtUsd(total)));
    kids.push(svg("text", { x: W - R + 4, y: ys(0) + 3 }, "$0"));
  }
  // Time ticks on round times, as many as fit (about one per 90 px).
  const span = x1 - x0, fit = Math.max(2, Math.floor((W - L - R) / 90));
  const step = STEPS.find((st) => span / st <= fit) || STEPS[STEPS.length - 1];
  const off = step >= 86400e3 ? new Date(x0).getTimezoneOffset() * 60e3 : 0;
  for (let t = Math.ceil((x0 - off) / step) * step + off; t <= x1; t += step) {
    const d = new Date(t);
    const label = step >= 86400e3 ? pad(d.getMonth() + 1) + "-" + pad(d.getDate())
      : span > 86400e3 && d.getHours() === 0 && d.getMinutes() === 0 ? pad(d.getMonth() + 1) + "-" + pad(d.getDate())
      : pad(d.getHours()) + ":" + pad(d.getMinutes());
    const xt = x(t);
    kids.push(svg("line", { class: "axis", x1: xt, x2: xt, y1: H - B, y2: H - B + 4 }));
    kids.push(svg("text", { x: xt, y: H - 6, "text-anchor": xt < L + 20 ? "start" : xt > W - R - 20 ? "end" : "middle" }, label));
  }
  if (!busy.length && total === 0) {
    kids.push(svg("text", { class: "empty", x: (L + W - R) / 2, y: (T + H - B) / 2, "text-anchor": "middle" },
      "No requests in this range."));
  }
  c.replaceChildren(...kids);
}
// --- audit ---------------------------------------------------------------------
function filterParams() {
  const p = new URLSearchParams();
  for (const k of FILTERS) if (state.filters[k]) p.set(k, state.filters[k]);
  return p;
}
function auditQuery() {
  const p = filterParams();
  p.set("limit", String(state.limit));
  p.set("offset", String(state.offset));
  return p.toString();
}
// The export links carry the table's filters and order; the browser sends the page's own
// credentials with them (loopback, or the dashboard cookie: same origin, path /_/).
function renderExports() {
  for (const fmt of ["csv", "json"]) {
    const p = filterParams();
    p.set("format", fmt);
    $("#export-" + fmt).setAttribute("href", "/_/api/export?" + p.toString());
  }
}
// No sort parameter is the API's default order: newest first.
function currentSort() {
  const v = state.filters.sort || "-ts";
  return v.startsWith("-") ? { column: v.slice(1), dir: "desc" } : { column: v, dir: "asc" };
}
function renderSortHeads() {
  const cur = currentSort();
  for (const th of $$("#audit-table th[data-sort]")) {
    if (th.dataset.sort === cur.column) th.setAttribute("aria-sort", cur.dir === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}
function sortBy(column) {
  const cur = currentSort();
  const dir = cur.column === column && cur.dir === "asc" ? "desc" : "asc";
  const f = Object.assign({}, state.filters);
  if (column === "ts" && dir === "desc") delete f.sort;
  else f.sort = (dir === "desc" ? "-" : "") + column;
  go(f);
}
function renderAudit(page) {
  const tbody = $("#audit-table tbody");
  const first = state.seen.size === 0;
  if (!page.items.length) emptyRow(tbody, 11, "No requests match these filters.");
  else tbody.replaceChildren(...page.items.map((r) => {
    const tr = el("tr", { class: "click", tabindex: 0, "data-id": r.id, onclick: () => openDetail(r.id),
      onkeydown: (e) => { if (e.key === "Enter") openDetail(r.id); } },
      td(fmtTime(r.ts), "muted", new Date(r.ts).toISOString()), td(badge(r.decision)), td(r.method, "mono"),
      td(hostPort(r), "mono clip", r.host),
      td(r.path === null ? "(tunnel)" : r.path + (r.query ? "?" + r.query : ""), "mono clip", r.path || ""),
      td(r.status === null ? "" : String(r.status), "num"), td(r.rule === null ? "(default)" : r.rule, "mono clip"),
      td(r.model === null ? "" : [r.model, r.provider ? el("span", { class: "muted", text: " · " + r.provider }) : null],
        "mono clip", r.model === null ? null : r.model + (r.provider ? " (" + r.provider + ")" : "")),
      td(r.session === null ? "" : who(r.session, r.label), "mono clip"),
      td(r.duration_ms.toFixed(0) + " ms", "num"),
      td((r.cost_usd === null ? "" : fmtUsd(r.cost_usd)) + (r.findings_count ? " ⚑" + r.findings_count : ""), "num"));
    if (!first && !state.seen.has(r.id)) tr.classList.add("fresh");
    state.seen.add(r.id);
    return tr;
  }));
  const end = page.offset + page.items.length;
  $("#audit-count").textContent = page.items.length
    ? (page.offset + 1) + "–" + end + " of " + fmtN(page.total) + (page.total_capped ? "+" : "")
    : "0 of " + fmtN(page.total);
  $("#audit-prev").disabled = page.offset === 0;
  $("#audit-next").disabled = page.total_capped ? page.items.length < page.limit : end >= page.total;
}
function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter((p) => p[1] !== null && p[1] !== undefined && p[1] !== "")
    .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", null, v)]));
}
async function openDetail(id) {
  const dlg = $("#detail");
  const body = $("#detail .body");
  $("#detail .title").textContent = "Request " + id;
  body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  if (!dlg.open) dlg.showModal();
  let r;
  try { r = await api("/_/api/audit/" + encodeURIComponent(id)); }
  catch (e) { body.replaceChildren(el("p", { text: "Could not load it: " + e.message })); return; }
  $("#detail .title").replaceChildren(badge(r.decision), " ", r.method + " " + r.scheme + "://" + target(r));
  const parts = [
    el("h2", { text: "Decision" }),
    kv([["Decision", badge(r.decision)], ["Reason", r.reason], ["Rule", r.rule === null ? "(default)" : r.rule],
      ["Rule source", r.rule_source], ["Policy", r.policy], ["Status", r.status === null ? "—" : String(r.status)],
      ["Error", r.error], ["Not inspected in full", r.inspection], ["Decision id", r.id]]),
    el("h2", { text: "Request" }),
    kv([["Time", new Date(r.ts).toISOString()], ["Method", r.method], ["URL", r.scheme + "://" + target(r)],
      ["Query", r.query], ["Address", r.dest_ip], ["Client", r.client], ["Session", r.session], ["Label", r.label],
      ["Bytes in / out", fmtN(r.bytes_in) + " / " + fmtN(r.bytes_out)], ["Duration", r.duration_ms.toFixed(1) + " ms"]]),
  ];
  if (r.model !== null || r.cost_usd !== null || r.input_tokens !== null) {
    parts.push(el("h2", { text: "Usage" }), kv([["Provider", r.provider], ["Model", r.model],
      ["Input tokens", r.input_tokens === null ? null : fmtN(r.input_tokens)],
      ["Output tokens", r.output_tokens === null ? null : fmtN(r.output_tokens)],
      ["Cache read / write", r.cache_read_tokens === null ? null : fmtN(r.cache_read_tokens) + " / " + fmtN(r.cache_write_tokens || 0)],
      ["Reasoning tokens", r.reasoning_tokens === null ? null : fmtN(r.reasoning_tokens)],
      ["Cost", r.cost_usd === null ? (r.price_unknown ? "unknown price" : r.input_tokens === null && r.model !== null ? "unknown usage" : null)
        : fmtUsd(r.cost_usd) + (r.price_incomplete ? " or more (no price for " + (r.price_missing || "part of the usage") + ")" : "")],
      ["Priced by", r.price_source], ["Service tier", r.service_tier],
      ["Partial", r.usage_partial ? "yes (stream cut: counts are a lower bound)" : null]]));
  }
  parts.push(el("h2", { text: "Headers (secrets redacted)" }));
  const h = r.headers || {};
  const names = Object.keys(h);
  parts.push(names.length ? el("table", { class: "headers" }, el("tbody", null, names.map((k) =>
    el("tr", null, td(k, "mono"), td(Array.isArray(h[k]) ? h[k].join(", ") : String(h[k]), "mono reason"))))) :
    el("p", { class: "muted", text: r.path === null ? "A tunnel shows no headers." : "None recorded." }));
  if (r.findings.length) {
    parts.push(el("h2", { text: "DLP findings" }), el("table", null,
      el("thead", null, el("tr", null, ["Detector", "Direction", "Where", "Sample", "Action"].map((x) => el("th", { text: x })))),
      el("tbody", null, r.findings.map((f) => el("tr", null, td(f.detector, "mono"), td(f.direction),
        td(f.location, "mono"), td(f.sample, "mono"), td(f.action))))));
  }
  body.replaceChildren(...parts);
}

// --- rules, sessions, findings -------------------------------------------------
function renderRules(r) {
  $("#rules-mode").textContent = "mode " + r.mode + " · default " + r.default.action;
  const rows = r.rules.map((x, i) => el("tr", { class: "click", tabindex: 0, onclick: () => go({ rule: x.name }) },
    td(String(i + 1), "num muted"), td(x.name, "mono"), td(x.match.join(", "), "mono clip", x.match.join(", ")),
    td(x.methods ? x.methods.join(", ") : "any", "mono"), td(badge(x.action === "deny" && r.mode === "audit" ? "would_deny" : x.action)),
    td([x.reason || "", x.when ? " when " + x.when : "", x.policies.length ? " · " + x.policies.join(", ") : ""].join(""), "reason"),
    td(fmtN(x.hits), "num"), td(ago(x.last_ts), "muted", x.last_ts ? new Date(x.last_ts).toISOString() : ""),
    td(x.source, "mono muted")));
  rows.push(el("tr", null, td("", "num"), td("(default)", "mono muted"), td("no rule matched", "muted"), td(""),
    td(badge(r.default.action)), td(r.default.source, "muted"), td(fmtN(r.default.hits), "num"),
    td(ago(r.default.last_ts), "muted"), td("")));
  $("#rules-table tbody").replaceChildren(...rows);
}
function renderSessions(r) {
  const tb = $("#sessions-table tbody");
  if (!r.sessions.length) return emptyRow(tb, 7, "No requests yet.");
  tb.replaceChildren(...r.sessions.map((s) => el("tr", { class: s.session === null ? "" : "click", tabindex: 0,
    onclick: s.session === null ? null : () => go({ session: s.session }) },
    td(s.session === null ? "(no session)" : s.session, "mono clip"), td(s.label || "", "clip"),
    td(fmtN(s.requests), "num"), td(s.deny + s.would_deny ? fmtN(s.deny + s.would_deny) : "", "num"),
    td(fmtUsd(s.spend_usd), "num"), td(fmtTime(s.first_ts), "muted"), td(fmtTime(s.last_ts) + " (" + ago(s.last_ts) + ")", "muted"))));
}
function inTime(iso) {
  if (!iso) return "";
  const s = Math.max(0, Math.round((new Date(iso).getTime() - Date.now()) / 1000));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  const rel = d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
  return fmtTime(new Date(iso).getTime()) + " (in " + rel + ")";
}
function keyLabel(l, v) {
  if (v !== "") return v;
  return l.key === "session" ? "(no session)" : l.key === "global" ? "(all rules)" : "(whole rule)";
}
// One line per limit and key: spent or used, reserved by calls in flight, the limit, what is left
// (a rate limit's headroom: requests that would pass now), the window and when it resets.
function renderBudgets(r) {
  const tb = $("#budgets-table tbody");
  $("#budgets-inflight").textContent = fmtN(r.in_flight) + " call(s) in flight";
  const rows = [];
  for (const l of r.limits) {
    const kind = l.policy === "spending_limit" ? "usd" : l.unit;
    const cap = kind === "usd" ? l.limit_usd : kind === "tokens" ? l.limit_tokens : l.limit_requests;
    const amount = (n) => kind === "usd" ? fmtUsd(n) : fmtN(n) + (kind === "tokens" ? " tokens" : " requests");
    const window = l.window;
    if (!l.budgets.length) {
      rows.push(el("tr", { "data-policy": l.policy, "data-unit": kind }, td(l.rule, "mono"), td(l.describe, "reason"),
        td("(nothing counted yet)", "muted"), td("", "num"), td("", "num"), td(amount(cap), "num"),
        td(amount(cap), "num"), td(window, "mono"), td("")));
      continue;
    }
    for (const b of l.budgets) {
      const used = kind === "usd" ? b.spent_usd : kind === "tokens" ? b.used_tokens : b.used_requests;
      const held = kind === "usd" ? b.reserved_usd : kind === "tokens" ? b.reserved_tokens : null;
      const left = Math.max(0, cap - used - (held || 0));
      rows.push(el("tr", { class: left <= 0 ? "over" : "", "data-policy": l.policy, "data-unit": kind },
        td(l.rule, "mono"), td(l.describe, "reason"),
        td(keyLabel(l, b.key_value), "mono clip", l.key),
        td(kind === "usd" ? fmtUsd(used) : fmtN(used), "num"),
        td(held === null ? "—" : kind === "usd" ? fmtUsd(held) : fmtN(held), "num", held === null ? "requests reserve nothing" : null),
        td(amount(cap), "num"), td(amount(left), "num left"), td(window, "mono"),
        td(inTime(b.resets_at), "muted", b.resets_at)));
    }
    if (l.truncated) rows.push(el("tr", null, td("", "mono"), td("", "reason"),
      td("… " + fmtN(l.truncated) + " more keys", "muted"), td(""), td(""), td(""), td(""), td(""), td("")));
  }
  if (!rows.length) return emptyRow(tb, 9, "No spending or rate limits in this policy.");
  tb.replaceChildren(...rows);
}
function renderFindings(r) {
  const tb = $("#findings-table tbody");
  if (!r.findings.length) return emptyRow(tb, 9, "No DLP findings.");
  tb.replaceChildren(...r.findings.map((f) => el("tr", { class: "click", tabindex: 0, onclick: () => openDetail(f.decision_id) },
    td(fmtTime(f.ts), "muted"), td(f.detector, "mono"), td(f.direction), td(f.location, "mono"), td(f.sample, "mono"),
    td(f.action), td(f.host, "mono clip"), td(f.rule === null ? "(default)" : f.rule, "mono clip"),
    td(f.session === null ? "(no session)" : who(f.session, f.label), "mono clip"))));
}

// --- refresh loop ----------------------------------------------------------------
async function refresh() {
  // A change while a read is out (a click on a header, a filter) is read right after it.
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  try {
    if (state.tab === "overview") {
      renderOverview(await api("/_/api/stats?hours=" + state.hours));
      renderBackends(await api("/_/api/health"));
    }
    else if (state.tab === "audit") {
      const shown = auditLink(state.filters) + (state.offset ? "@" + state.offset : "");
      renderAudit(await api("/_/api/audit?" + auditQuery()));
      // What the table shows now (tests wait on it; a stale answer is replaced right after).
      $("#audit-table").dataset.shown = shown;
    }
    else if (state.tab === "rules") renderRules(await api("/_/api/rules"));
    else if (state.tab === "sessions") renderSessions(await api("/_/api/sessions"));
    else if (state.tab === "budgets") renderBudgets(await api("/_/api/budgets"));
    else if (state.tab === "findings") renderFindings(await api("/_/api/dlp/recent?limit=200"));
    live(true, "live · " + fmtTime(Date.now()));
    banner("");
  } catch (e) {
    live(false, "offline · retrying");
    if (e.status === 401) banner("This dashboard needs its token: open /_/dashboard?token=… once, or reload.");
    else if (e.status === 400) banner(e.message);
  } finally {
    state.busy = false;
    if (state.again) refresh();
  }
}

window.addEventListener("hashchange", () => { readHash(); refresh(); });
$("#audit-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  go(readForm());
});
$("#audit-filters").addEventListener("change", (e) => {
  const form = $("#audit-filters");
  // Typing a date picks the custom range; a preset clears the dates.
  if (e.target.type === "datetime-local") { form.elements.range.value = "custom"; return; }
  if (e.target.name === "range" && e.target.value !== "custom") { form.elements.since.value = ""; form.elements.until.value = ""; }
  if (e.target.tagName === "SELECT" && !(e.target.name === "range" && e.target.value === "custom")) form.requestSubmit();
});
for (const th of $$("#audit-table th[data-sort]")) th.addEventListener("click", () => sortBy(th.dataset.sort));
window.addEventListener("resize", () => { if (state.stats && state.tab === "overview") renderChart(state.stats); });
$("#audit-clear").addEventListener("click", () => go({}));
function page(delta) {
  state.offset = Math.max(0, state.offset + delta);
  const p = filterParams();
  if (state.offset) p.set("offset", String(state.offset));
  location.hash = "#audit" + (p.toString() ? "?" + p : "");
}
$("#audit-prev").addEventListener("click", () => page(-state.limit));
$("#audit-next").addEventListener("click", () => page(state.limit));
for (const b of $$("#range button")) b.addEventListener("click", () => {
  state.hours = Number(b.dataset.hours);
  for (const x of $$("#range button")) x.classList.toggle("active", x === b);
  refresh();
});
$("#detail-close").addEventListener("click", () => $("#detail").close());
$("#detail").addEventListener("click", (e) => { if (e.target === $("#detail")) $("#detail").close(); });
readHash();
refresh();
setInterval(() => { if (!document.hidden) refresh(); }, 3000);
document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
`;

function rowsOrEmpty(rows: string[], cols: number, empty: string): string {
  return rows.length ? rows.join("") : `<tr><td class="empty" colspan="${cols}">${empty}</td></tr>`;
}

/**
 * The whole document. `nonce` must be fresh per response and match the
 * `Content-Security-Policy` header's `script-src` / `style-src`.
 *
 * @example
 * res.end(renderPage({ nonce, version, stats, denials, auditPath, policyFile }));
 */
export function renderPage(p: PageInput): string {
  const s = p.stats;
  const t = s.totals;
  const card = (cls: string, k: string, label: string, v: string) =>
    `<div class="card ${cls}"><div class="k">${label}</div><div class="v" data-k="${k}">${v}</div></div>`;
  const hosts = s.top_hosts.map((h) =>
    `<tr><td class="mono clip">${escapeHtml(h.host)}</td><td class="num">${
      fmtN(h.requests)
    }</td><td class="num">${h.deny + h.would_deny ? fmtN(h.deny + h.would_deny) : ""}</td></tr>`
  );
  const denials = p.denials.groups.map((d) =>
    `<tr><td class="muted">${fmtTs(d.last_ts)}</td><td class="num count">×${
      fmtN(d.count)
    }</td><td><span class="badge b-${escapeHtml(d.decision)}">${
      escapeHtml(d.decision.replace("_", " "))
    }</span></td><td class="mono clip">${
      escapeHtml(`${d.method} ${d.host}${d.path ?? `:${d.port}`}`)
    }</td><td class="mono clip">${escapeHtml(d.rule ?? "(default)")}</td><td class="reason">${
      escapeHtml(d.reason)
    }</td></tr>`
  );
  const rules = s.top_denied_rules.map((r) =>
    `<tr><td class="mono">${escapeHtml(r.rule ?? "(default)")}</td><td class="num">${
      fmtN(r.deny + r.would_deny)
    }</td><td class="muted">${fmtTs(r.last_ts)}</td></tr>`
  );
  const models = s.spend_by_model.map((m) =>
    `<tr><td class="mono">${escapeHtml(m.model)}</td><td class="muted">${
      escapeHtml(m.provider ?? "")
    }</td><td class="num">${fmtN(m.requests)}</td><td class="num">${fmtN(m.input_tokens)} / ${
      fmtN(m.output_tokens)
    }</td><td class="num">${fmtUsd(m.cost_usd)}</td></tr>`
  );
  const sessions = s.spend_by_session.map((x) =>
    `<tr><td class="mono clip">${
      escapeHtml(
        x.session === null
          ? "(no session)"
          : `${x.label && x.label !== x.session ? `${x.label} · ` : ""}${x.session}`,
      )
    }</td><td class="num">${fmtN(x.requests)}</td><td class="num">${fmtUsd(x.cost_usd)}</td></tr>`
  );
  const n = escapeHtml(p.nonce);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>agentgate</title>
<link rel="icon" href="data:,">
<style nonce="${n}">${CSS}</style>
</head>
<body>
<header>
  <div class="brand">agentgate<small>${escapeHtml(p.version)}</small></div>
  <nav>
    <a href="#overview" data-tab="overview" class="active">Overview</a>
    <a href="#audit" data-tab="audit">Audit</a>
    <a href="#rules" data-tab="rules">Rules</a>
    <a href="#sessions" data-tab="sessions">Sessions</a>
    <a href="#budgets" data-tab="budgets">Budgets</a>
    <a href="#findings" data-tab="findings">Findings</a>
  </nav>
  <div id="live">rendered ${fmtTs(s.until)}</div>
</header>
<main>
<div id="banner" role="alert"></div>

<section class="tab active" id="tab-overview">
  <div class="toolbar">
    <div class="seg" id="range">
      <button type="button" data-hours="1">Last hour</button><button type="button" data-hours="24" class="active">24 h</button><button type="button" data-hours="168">7 d</button>
    </div>
    <span class="nojs-only">Last 24 hours, as of ${
    fmtTs(s.until)
  }. Enable JavaScript for live updates, the audit table, rules, sessions and findings.</span>
  </div>
  <div class="cards">
    ${card("", "requests", "Requests", fmtN(t.requests))}
    ${card("allow", "allowed", "Allowed", fmtN(t.allow + t.log))}
    ${card("deny", "denied", "Denied", fmtN(t.deny))}
    ${card("would", "would", "Would deny", fmtN(t.would_deny))}
    ${card("err", "errors", "Errors", fmtN(t.error))}
    ${card("spend", "spend", "Spend", fmtUsd(t.spend_usd))}
    <a class="card tun" href="#audit?tunnels=only" title="CONNECT tunnels are connections, not requests: counted apart"><div class="k">Tunnels</div><div class="v" data-k="tunnels">${
    fmtN(t.tunnels)
  }</div></a>
  </div>
  <div class="panel">
    <h2>Requests and spend over time</h2>
    <svg id="chart" viewBox="0 0 800 180" role="img" aria-label="Requests and spend over time"></svg>
    <div class="legend"><span><i class="l-req"></i>requests (tunnels apart)</span><span><i class="l-den"></i>denied</span><span><i class="l-sp"></i>spend, adding up to the total (USD)</span></div>
  </div>
  <div class="grid">
    <div class="panel wide"><h2>Recent denials <span class="muted" id="denials-note">${
    p.denials.grouped < p.denials.denials
      ? `grouped over the latest ${fmtN(p.denials.grouped)} of ${fmtN(p.denials.denials)} denials`
      : ""
  }</span></h2>
      <table id="recent-denials"><thead><tr><th>Latest</th><th class="num">Count</th><th>Decision</th><th>Request (latest)</th><th>Rule</th><th>Reason</th></tr></thead>
      <tbody>${rowsOrEmpty(denials, 6, "Nothing denied in this range.")}</tbody></table></div>
    <div class="panel"><h2>Top hosts</h2>
      <table id="top-hosts"><thead><tr><th>Host</th><th class="num">Requests</th><th class="num">Denied</th></tr></thead>
      <tbody>${rowsOrEmpty(hosts, 3, "No requests in this range.")}</tbody></table></div>
    <div class="panel"><h2>Rules that denied</h2>
      <table id="top-rules"><thead><tr><th>Rule</th><th class="num">Denied</th><th>Last</th></tr></thead>
      <tbody>${rowsOrEmpty(rules, 3, "No rule denied anything.")}</tbody></table></div>
    <div class="panel"><h2>Spend by model</h2>
      <table id="spend-models"><thead><tr><th>Model</th><th>Provider</th><th class="num">Calls</th><th class="num">Tokens in / out</th><th class="num">Cost</th></tr></thead>
      <tbody>${rowsOrEmpty(models, 5, "No LLM calls in this range.")}</tbody></table></div>
    <div class="panel"><h2>Spend by session</h2>
      <table id="spend-sessions"><thead><tr><th>Session</th><th class="num">Calls</th><th class="num">Cost</th></tr></thead>
      <tbody>${rowsOrEmpty(sessions, 3, "No LLM spend in this range.")}</tbody></table></div>
    <div class="panel wide"><h2>Backends</h2>
      <table id="backends"><thead><tr><th>Name</th><th>Kind</th><th>Where</th><th>State</th>
        <th class="num">Latency</th><th class="num">Errors</th><th class="num">Queued</th><th class="num">Dropped</th>
        <th>Last error</th></tr></thead>
      <tbody><tr><td class="empty" colspan="9">Loading…</td></tr></tbody></table></div>
  </div>
</section>

<section class="tab" id="tab-audit">
  <form class="filters" id="audit-filters" autocomplete="off">
    <label>Host<input name="host" placeholder="api.openai.com or *.example.com"></label>
    <label>Decision<select name="decision">
      <option value="">any</option><option value="allow">allow</option><option value="log">log</option>
      <option value="deny">deny</option><option value="would_deny">would deny</option>
      <option value="deny,would_deny">deny + would deny</option><option value="error">error</option>
      <option value="challenge">407 challenge</option>
    </select></label>
    <label>Session<input name="session"></label>
    <label>Rule<input name="rule"></label>
    <label>Model<input name="model" placeholder="gpt-4o-mini"></label>
    <label>Policy<input name="policy" list="policy-names" placeholder="rate_limit, dlp…"></label>
    <label>Status<input name="status" inputmode="numeric" placeholder="429"></label>
    <label>Tunnels<select name="tunnels">
      <option value="">requests and tunnels</option><option value="exclude">requests only</option>
      <option value="only">tunnels only</option>
    </select></label>
    <label>Search<input name="search" type="search" placeholder="path, reason, id…"></label>
    <label>Time<select name="range">
      <option value="">any time</option><option value="15m">last 15 min</option><option value="1h">last hour</option>
      <option value="24h">last 24 hours</option><option value="7d">last 7 days</option><option value="custom">custom…</option>
    </select></label>
    <label>From<input name="since" type="datetime-local"></label>
    <label>To<input name="until" type="datetime-local"></label>
    <button class="btn" type="submit">Apply</button>
    <button class="btn" type="button" id="audit-clear">Clear</button>
    <span class="exports">Export <a class="btn" id="export-csv" href="/_/api/export?format=csv">CSV</a>
      <a class="btn" id="export-json" href="/_/api/export?format=json">JSON</a></span>
    <datalist id="policy-names"><option value="rate_limit"><option value="spending_limit"><option value="time_window">
      <option value="dlp"><option value="address"><option value="credentials"><option value="proxy_auth">
      <option value="max_tunnels_per_client"></datalist>
  </form>
  <div class="panel">
    <table id="audit-table"><thead><tr><th data-sort="ts">Time</th><th data-sort="decision">Decision</th>
      <th data-sort="method">Method</th><th data-sort="host">Host</th><th data-sort="path">Path</th>
      <th class="num" data-sort="status">Status</th><th data-sort="rule">Rule</th><th data-sort="model">Model</th>
      <th data-sort="session">Session</th><th class="num" data-sort="duration_ms">Duration</th>
      <th class="num" data-sort="cost_usd">Cost</th></tr></thead>
      <tbody><tr><td class="empty" colspan="11">Loading…</td></tr></tbody></table>
    <div class="pager"><button class="btn" type="button" id="audit-prev">← Newer</button>
      <button class="btn" type="button" id="audit-next">Older →</button><span id="audit-count"></span></div>
  </div>
</section>

<section class="tab" id="tab-rules">
  <div class="toolbar"><span class="muted" id="rules-mode"></span></div>
  <div class="panel">
    <table id="rules-table"><thead><tr><th class="num">#</th><th>Name</th><th>Match</th><th>Methods</th><th>Action</th>
      <th>Reason · condition · policies</th><th class="num">Hits</th><th>Last hit</th><th>Source</th></tr></thead>
      <tbody><tr><td class="empty" colspan="9">Loading…</td></tr></tbody></table>
  </div>
</section>

<section class="tab" id="tab-sessions">
  <div class="panel">
    <table id="sessions-table"><thead><tr><th>Session</th><th>Label</th><th class="num">Requests</th>
      <th class="num">Denied</th><th class="num">Spend</th><th>First seen</th><th>Last seen</th></tr></thead>
      <tbody><tr><td class="empty" colspan="7">Loading…</td></tr></tbody></table>
  </div>
</section>

<section class="tab" id="tab-budgets">
  <div class="toolbar"><span class="muted" id="budgets-inflight"></span></div>
  <div class="panel">
    <table id="budgets-table"><thead><tr><th>Rule</th><th>Limit</th><th>Key</th><th class="num">Spent / used</th>
      <th class="num">Reserved in flight</th><th class="num">Limit</th><th class="num">Left</th><th>Window</th>
      <th>Resets</th></tr></thead>
      <tbody><tr><td class="empty" colspan="9">Loading…</td></tr></tbody></table>
  </div>
</section>

<section class="tab" id="tab-findings">
  <div class="panel">
    <table id="findings-table"><thead><tr><th>Time</th><th>Detector</th><th>Direction</th><th>Where</th>
      <th>Sample (masked)</th><th>Action</th><th>Host</th><th>Rule</th><th>Session</th></tr></thead>
      <tbody><tr><td class="empty" colspan="9">Loading…</td></tr></tbody></table>
  </div>
</section>

<footer>policy <code>${escapeHtml(p.policyFile)}</code> · audit <code>${
    escapeHtml(p.auditPath)
  }</code> · JSON API under <code>/_/api/</code> · <a href="/_/metrics">metrics</a></footer>
</main>

<dialog id="detail" aria-label="Request detail">
  <div class="head"><div class="title"></div><button class="btn" type="button" id="detail-close">Close</button></div>
  <div class="body"></div>
</dialog>
<script nonce="${n}">${JS}</script>
</body>
</html>
`;
}
