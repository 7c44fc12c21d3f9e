// Leadflow dashboard. Plain browser JavaScript, no libraries, no calls to
// any host but the projector that served it. Every figure is fetched from
// the projector's JSON (the same app methods as its gRPC API) and links
// to the leads behind it; a lead links to its journey.
"use strict";

// ---- formatting for people (the browser's locale) ----
const LOCALE = undefined;
const intFmt = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const fracFmt = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });
const pctFmt = new Intl.NumberFormat(LOCALE, { style: "percent", maximumFractionDigits: 1 });
const dateTimeFmt = new Intl.DateTimeFormat(LOCALE, { dateStyle: "medium", timeStyle: "short" });
const dateFmt = new Intl.DateTimeFormat(LOCALE, { dateStyle: "medium", timeZone: "UTC" }); // period bounds are UTC days
const timeFmt = new Intl.DateTimeFormat(LOCALE, { timeStyle: "medium" });

const n = (v) => Number(v || 0); // protojson sends int64 as strings
function fmtCount(v) { v = n(v); return Number.isInteger(v) ? intFmt.format(v) : fracFmt.format(v); }
function fmtPct(v) { return pctFmt.format(n(v)); }
const moneyFmts = {};
// ISO 4217 minor digits where they are not 2: a browser's own may differ
// (Chromium gives RSD and IQD none), and the amounts are ISO minor units.
const MINOR_DIGITS = { BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3, CLF: 4, UYW: 4,
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0 };
// Money is in minor units; amounts of 1,000 or more drop the cents.
function fmtMoney(minor, currency) {
  if (!currency) return fmtCount(n(minor) / 100);
  const key = currency;
  if (!moneyFmts[key]) {
    const digits = MINOR_DIGITS[currency] ?? 2;
    const base = new Intl.NumberFormat(LOCALE, { style: "currency", currency, minimumFractionDigits: digits, maximumFractionDigits: digits });
    moneyFmts[key] = { digits, small: base, big: new Intl.NumberFormat(LOCALE, { style: "currency", currency, maximumFractionDigits: 0, minimumFractionDigits: 0 }) };
  }
  const f = moneyFmts[key];
  const major = n(minor) / Math.pow(10, f.digits);
  return Math.abs(major) >= 1000 ? f.big.format(major) : f.small.format(major);
}
function fmtHours(h) {
  h = n(h);
  if (h === 0) return "–";
  return h >= 48 ? fracFmt.format(Math.round(h / 2.4) / 10) + " d" : fracFmt.format(Math.round(h * 10) / 10) + " h";
}
const ts = (s) => (s ? new Date(s) : null);
function fmtWhen(s) { const d = ts(s); return d ? dateTimeFmt.format(d) : "–"; }
const shortFmt = new Intl.DateTimeFormat(LOCALE, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" });
function fmtShort(s) { const d = ts(s); return d ? shortFmt.format(d) : "–"; }
function fmtDay(s) { const d = ts(s); return d ? dateFmt.format(d) : "–"; }
const words = (enumName, prefix) => (enumName || "").replace(prefix, "").toLowerCase().replace(/_/g, " ");
const status = (s) => words(s, "LEAD_STATUS_");
function owner(o) { if (!o || !o.id) return ""; return words(o.kind, "OWNER_KIND_") + " " + o.id; }
const channel = (c) => (c && c !== "CHANNEL_UNSPECIFIED" ? words(c, "CHANNEL_") : "");

// ---- DOM ----
// el builds an element; strings become text nodes, so data is never
// parsed as HTML.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    // Styles through the CSSOM: the page's CSP forbids style attributes.
    else if (k === "style") for (const [p, x] of Object.entries(v)) e.style.setProperty(p, x);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}
const $ = (id) => document.getElementById(id);

// ---- routing and filters: everything is in the URL hash ----
function route() {
  const h = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = h.split("?");
  return { path, params: new URLSearchParams(qs || "") };
}
const FILTERS = ["from", "to", "segment", "source", "attribution", "group", "currency"];
// DRILL names the figure a lead list shows: kept when its filters change.
const DRILL = ["figure", "measure", "row", "key", "campaign", "month", "overdue"];
function filterParams(extra) {
  const cur = route().params, p = new URLSearchParams();
  for (const k of FILTERS) if (cur.get(k)) p.set(k, cur.get(k));
  for (const [k, v] of Object.entries(extra || {})) { if (v === "" || v === undefined || v === null) p.delete(k); else p.set(k, v); }
  return p;
}
const href = (path, extra) => { const p = filterParams(extra).toString(); return "#" + path + (p ? "?" + p : ""); };
function setParams(extra) {
  const r = route(), keep = {};
  if (r.path === "/leads") for (const k of DRILL) if (r.params.get(k)) keep[k] = r.params.get(k);
  // A funnel row by segment or source whose filter changes becomes that
  // value's row, or with "All" the whole figure.
  if (keep.row && Object.prototype.hasOwnProperty.call(extra, keep.row)) {
    if (extra[keep.row]) keep.key = extra[keep.row]; else { delete keep.row; delete keep.key; }
  }
  location.hash = href(r.path, Object.assign(keep, extra)).slice(1);
}
// The overview last shown, filters and all: a drill-down writes its own
// segment, source or period into the list's link, which "back" must not keep.
let overviewHash = "";
const overviewHref = () => overviewHash || href("/");

async function api(path, params, opts) {
  const res = await fetch("/api/" + path + (params && params.toString() ? "?" + params : ""), Object.assign({ cache: "no-store" }, opts));
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (res.status === 401 && path !== "session") showSignIn(body.error);
  if (!res.ok) { const err = new Error(body.error || res.statusText); err.body = body; err.status = res.status; throw err; }
  return body;
}

// ---- signing in: with auth on, the page needs a token granting the
// reports; the projector keeps it in an HttpOnly cookie, never the page ----
let signingIn = false;
function showSignIn(why) {
  if (signingIn) return;
  signingIn = true;
  const input = el("input", { type: "password", id: "signin-token", placeholder: "bearer token", autocomplete: "off", spellcheck: "false" });
  const msg = el("div", { class: "error", id: "signin-error" }, why && why !== "sign in: no token" ? why : "");
  const form = el("form", { class: "signin", id: "signin" }, el("label", {}, "Token ", input), el("button", { type: "submit" }, "Sign in"), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("session", null, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: input.value }) });
      signingIn = false;
      start();
    } catch (err) { msg.textContent = err.message; }
  });
  $("view").replaceChildren(panel("", "Sign in", "a token granting reports:read, and leads:read for the leads behind the figures (make run prints one)", null, form));
  document.body.dataset.signin = "true";
}
function reportParams(keys) {
  const cur = route().params, p = new URLSearchParams();
  for (const k of keys) if (cur.get(k)) p.set(k, cur.get(k));
  return p;
}

// ---- periods ----
const iso = (d) => d.toISOString().slice(0, 10);
// The page's period is whole days, YYYY-MM-DD: a link or a field holding
// anything else is said so, not turned into a blank page.
const isDay = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s) && !isNaN(Date.parse(s + "T00:00:00Z"));
const dayAfter = (day, n) => (isDay(day) ? iso(new Date(Date.parse(day + "T00:00:00Z") + n * 864e5)) : day);
function presetRange(name) {
  const now = new Date(), y = now.getUTCFullYear(), m = now.getUTCMonth();
  const day = (yy, mm, dd) => iso(new Date(Date.UTC(yy, mm, dd || 1)));
  switch (name) {
    case "this-month": return [day(y, m), day(y, m + 1)];
    case "last-month": return [day(y, m - 1), day(y, m)];
    case "this-quarter": { const q = m - (m % 3); return [day(y, q), day(y, q + 3)]; }
    case "last-90": return [iso(new Date(Date.now() - 89 * 864e5)), iso(new Date(Date.now() + 864e5))];
    case "this-year": return [day(y, 0), day(y + 1, 0)];
  }
  return ["", ""];
}
function periodLabel(p) {
  const from = p.get("from"), to = p.get("to");
  if (!from && !to) return "all time";
  const f = !from ? "the start" : isDay(from) ? fmtDay(from + "T00:00:00Z") : from;
  const t = !to ? "now" : isDay(to) ? fmtDay(dayAfter(to, -1) + "T00:00:00Z") : to;
  return f + " – " + t;
}

function syncFilters() {
  const p = route().params;
  $("f-from").value = p.get("from") || "";
  $("f-to").value = p.get("to") ? dayAfter(p.get("to"), -1) : ""; // the last day shown: the query's "to" is the day after
  $("f-segment").value = p.get("segment") || "";
  $("f-source").value = p.get("source") || "";
  let preset = "custom";
  for (const o of $("f-preset").options) {
    const [a, b] = presetRange(o.value);
    if (o.value !== "custom" && a === (p.get("from") || "") && b === (p.get("to") || "")) preset = o.value;
  }
  $("f-preset").value = preset;
  $("f-hint").textContent = "segment/source: funnel; segment: SLA";
}
function setOptions(select, values) {
  const cur = route().params.get(select.name) || "";
  const want = ["", ...values.filter((v) => v !== "")];
  if (cur && !want.includes(cur)) want.push(cur);
  const have = [...select.options].map((o) => o.value);
  if (have.join("\u0000") === want.join("\u0000")) return;
  select.replaceChildren(...want.map((v) => el("option", { value: v }, v === "" ? "All" : v)));
  select.value = cur;
}

// ---- live: Server-Sent Events when the projector commits ----
// renderedFrom is the notice generation known when the page shown began
// loading: its figures are at least that new. firstNotice, while set,
// holds the first page's load until the stream tells where it stands.
const live = { gen: -1, renderedFrom: -1, firstNotice: null, seq: 0, lastRefresh: 0, inFlight: false, again: false, timer: 0, connected: false, es: null, retry: 1000 };
function firstNoticeCame() {
  const go = live.firstNotice;
  live.firstNotice = null;
  if (go) go();
  return go !== null;
}
function connectLive() {
  if (live.es) live.es.close();
  const es = new EventSource("/api/live");
  live.es = es;
  es.addEventListener("change", (e) => {
    const notice = JSON.parse(e.data);
    live.seq = notice.seq;
    setLive(true);
    const first = live.gen === -1;
    live.gen = notice.gen;
    // A page loaded from older figures than the notice's (a change
    // committed since, or before the stream opened) loads again; so does
    // one whose load failed (the projector not ready yet) at the first
    // notice: nothing else would until a change.
    if (!firstNoticeCame() && (notice.gen !== live.renderedFrom || first && $("view").querySelector(".error") && !signingIn)) scheduleRefresh();
    const dot = $("live"); dot.classList.add("flash"); setTimeout(() => dot.classList.remove("flash"), 150);
  });
  es.onopen = () => { live.retry = 1000; setLive(true); };
  es.onerror = () => {
    setLive(false);
    firstNoticeCame(); // no stream: the first page loads without it
    // The browser reconnects by itself after a dropped stream, not after
    // a refusal: the session ended (the token expired or was revoked), or
    // something in between answers for the projector; tried again less
    // and less often.
    if (es.readyState !== EventSource.CLOSED || live.es !== es) return;
    const again = () => {
      setTimeout(() => { if (live.es === es) connectLive(); }, live.retry);
      live.retry = Math.min(live.retry * 2, 60000);
    };
    api("session").then((s) => { if (s.auth && !s.subject) showSignIn("the session ended: sign in again"); else again(); }, again);
  };
}
function setLive(on) {
  live.connected = on;
  $("live").className = "live " + (on ? "on" : "off");
  updateLiveText();
}
function updateLiveText() {
  const t = live.connected ? "Live" : "Reconnecting…";
  const at = live.lastRefresh ? " · updated " + timeFmt.format(new Date(live.lastRefresh)) : "";
  const seq = live.seq ? " · stream #" + intFmt.format(live.seq) : "";
  $("live-text").textContent = t + seq + at;
}
// At most one refresh a second and one at a time; a notice during a
// refresh runs another right after it.
function scheduleRefresh() {
  if (live.inFlight) { live.again = true; return; }
  if (live.timer) return;
  const wait = Math.max(0, 1000 - (Date.now() - live.lastRefresh));
  live.timer = setTimeout(() => { live.timer = 0; render(true); }, wait);
}

// ---- rendering ----
let renderSeq = 0;
async function render(isLive) {
  const my = ++renderSeq;
  const hash = location.hash;
  const from = live.gen;
  live.inFlight = true;
  try {
    const { path, params } = route();
    syncFilters();
    let view;
    const bad = ["from", "to"].filter((k) => params.get(k) && !isDay(params.get(k)));
    try {
      if (bad.length) throw new Error(bad.map((k) => `${k}: must be a date like 2026-03-01, not ${JSON.stringify(params.get(k))}`).join("; "));
      if (path.startsWith("/lead/")) view = await leadView(decodeURIComponent(path.slice(6)));
      else if (path === "/leads") view = await leadsView(params);
      else view = await overview(params, isLive);
    } catch (e) {
      view = panel("", "Cannot show this page", "", null, errorBox(e));
    }
    if (my !== renderSeq || signingIn) return; // a newer render won, or the sign-in form shows
    $("view").replaceChildren(view);
    if (path !== "/leads" && !path.startsWith("/lead/")) overviewHash = hash || "#/";
    document.body.dataset.loaded = "true";
    document.body.dataset.route = hash;
    live.renderedFrom = from;
    document.body.dataset.gen = String(from);
    live.lastRefresh = Date.now();
    updateLiveText();
  } finally {
    live.inFlight = false;
    if (live.again) { live.again = false; scheduleRefresh(); }
  }
}

function crumbs(...parts) {
  $("crumbs").replaceChildren(...parts.flatMap((p, i) => (i ? [" › ", p] : [p])));
}

function panel(cls, title, sub, tools, ...body) {
  return el("section", { class: "panel " + cls },
    el("div", { class: "panel-head" }, el("h2", {}, title), sub ? el("span", { class: "sub" }, sub) : null,
      tools ? el("div", { class: "tools" }, tools) : null),
    ...body);
}
function errorBox(e) {
  const v = e.body && e.body.violations;
  return el("div", { class: "error" }, v ? v.map((x) => x.field + ": " + x.description).join("; ") : e.message);
}
async function settle(promise) { try { return { ok: await promise }; } catch (e) { return { err: e }; } }

// A figure: its formatted text, linked to the leads it counts.
function fig(text, key, drill, cls) {
  const attrs = { class: "num " + (cls || ""), dataset: { k: key } };
  if (!drill) return el("span", attrs, text);
  attrs.href = href("/leads", drill);
  attrs.title = "Show the leads behind this figure";
  return el("a", attrs, text);
}

// ---- overview ----
async function overview(p, isLive) {
  crumbs("Overview · " + periodLabel(p));
  const base = reportParams(["from", "to", "segment", "source"]);
  const group = p.get("group") || "source";
  const attr = p.get("attribution") || "first";
  const camp = reportParams(["from", "to"]); camp.set("attribution", attr); if (p.get("currency")) camp.set("currency", p.get("currency"));
  const sla = reportParams(["from", "to", "segment"]);
  const byGroup = new URLSearchParams(base); byGroup.set("group", group);
  const allTime = reportParams(["from", "to"]);
  const seg = new URLSearchParams(allTime); seg.set("group", "segment");
  const src = new URLSearchParams(allTime); src.set("group", "source");
  const recent = reportParams(["from", "to", "segment", "source"]); recent.set("limit", "8"); // as "all leads →" lists them
  // The filter choices change rarely: a live refresh leaves them be.
  const none = Promise.resolve({ err: null });
  const queues = reportParams(["segment"]);
  const [funnel, grouped, segs, srcs, campaigns, slaR, model, leads, queuesR] = await Promise.all([
    settle(api("funnel", base)), settle(api("funnel", byGroup)),
    isLive ? none : settle(api("funnel", seg)), isLive ? none : settle(api("funnel", src)),
    settle(api("campaigns", camp)), settle(api("sla", sla)), settle(api("model")), settle(api("leads", recent)), settle(api("queues", queues)),
  ]);
  if (segs.ok) setOptions($("f-segment"), segs.ok.rows.map((r) => r.key));
  if (srcs.ok) setOptions($("f-source"), srcs.ok.rows.map((r) => r.key));
  return el("div", { class: "grid" },
    el("div", { class: "span-7" }, funnelPanel(funnel, grouped, group)),
    el("div", { class: "span-5" }, slaPanel(slaR, queuesR)),
    el("div", { class: "span-12" }, campaignPanel(campaigns, attr)),
    el("div", { class: "span-7" }, modelPanel(model)),
    el("div", { class: "span-5" }, recentPanel(leads)));
}

const STAGES = [["captured", "Captured"], ["mql", "MQL"], ["accepted", "Accepted"], ["opportunity", "Opportunity"], ["won", "Won"]];
const RATE = { mql: "mql_rate", accepted: "accept_rate", opportunity: "opportunity_rate", won: "win_rate" };

function funnelPanel(res, grouped, group) {
  const tools = el("label", {}, "Break down by ",
    el("select", { onchange: (e) => setParams({ group: e.target.value }) },
      ["source", "segment", "period"].map((g) => el("option", { value: g, selected: g === group }, g === "period" ? "month" : g))));
  if (res.err) return panel("funnel-panel", "Funnel", "", tools, errorBox(res.err));
  const t = res.ok.total, top = Math.max(1, n(t.captured));
  const drill = (measure) => ({ figure: "funnel", measure });
  const rows = STAGES.map(([k, label]) => [
    el("div", { class: "label" }, label),
    el("div", { class: "track" }, el("div", { class: "bar" + (k === "won" ? " won" : ""), style: { width: (100 * n(t[k])) / top + "%" } })),
    el("div", { class: "count" }, fig(fmtCount(t[k]), "funnel." + k, drill(k))),
    el("div", { class: "rate" }, RATE[k] ? fmtPct(t[RATE[k]]) + " of previous" : ""),
  ]);
  const body = [el("div", { class: "funnel" }, rows),
    el("div", { class: "side-stats" },
      el("div", {}, "Recycled", fig(fmtCount(t.recycled), "funnel.recycled", drill("recycled"))),
      el("div", {}, "Disqualified", fig(fmtCount(t.disqualified), "funnel.disqualified", drill("disqualified"))),
      el("div", {}, "Captured → won ", el("b", { class: "num" }, fmtPct(n(t.captured) ? n(t.won) / n(t.captured) : 0))))];
  if (grouped.ok && grouped.ok.rows.length) {
    const keyName = group === "period" ? "month" : group;
    const rowDrill = (r, measure) => {
      const d = { figure: "funnel", measure };
      if (group === "period") {
        const start = r.key, end = new Date(Date.parse(start + "T00:00:00Z")); end.setUTCMonth(end.getUTCMonth() + 1);
        const cur = route().params, to = cur.get("to");
        d.from = cur.get("from") && cur.get("from") > start ? cur.get("from") : start;
        d.to = to && to < iso(end) ? to : iso(end);
      } else Object.assign(d, { [group]: r.key, row: group, key: r.key }); // key "": the leads with none
      return d;
    };
    body.push(el("h3", {}, "By " + keyName),
      el("div", { class: "scroll" }, el("table", { class: "tbl-compact" },
        el("thead", {}, el("tr", {}, el("th", {}, keyName), STAGES.map(([, l]) => el("th", {}, l)), el("th", {}, "Recycled"), el("th", {}, "Disq."), el("th", {}, "Win rate"))),
        el("tbody", {}, grouped.ok.rows.map((r) => el("tr", {},
          el("td", { class: "text" }, group === "period" ? fmtMonth(r.key) : r.key || "(none)"),
          STAGES.map(([k]) => el("td", {}, fig(fmtCount(r[k]), `funnel.${group}.${r.key}.${k}`, rowDrill(r, k)))),
          el("td", {}, fig(fmtCount(r.recycled), `funnel.${group}.${r.key}.recycled`, rowDrill(r, "recycled"))),
          el("td", {}, fig(fmtCount(r.disqualified), `funnel.${group}.${r.key}.disqualified`, rowDrill(r, "disqualified"))),
          el("td", {}, fmtPct(r.win_rate))))))));
  }
  body.push(el("div", { class: "note" }, "Leads captured in the period, counted once per stage they ever reached; rates are shares of the stage before."));
  return panel("funnel-panel", "Funnel", "captured → MQL → accepted → opportunity → won", tools, ...body);
}
const monthFmt = new Intl.DateTimeFormat(LOCALE, { month: "short", year: "numeric", timeZone: "UTC" });
// fmtMonth names a month (YYYY-MM), a day, or the quarter or year of a
// marketing target's row (YYYY-QN, YYYY), which are no dates to parse.
function fmtMonth(key) {
  if (!key) return "–";
  const q = /^(\d{4})-Q([1-4])$/.exec(key);
  if (q) return "Q" + q[2] + " " + q[1];
  if (/^\d{4}$/.test(key)) return key;
  return monthFmt.format(new Date(key.length === 7 ? key + "-01T00:00:00Z" : key + "T00:00:00Z"));
}

function queuesTable(res) {
  if (res.err) return errorBox(res.err);
  const qs = res.ok.queues || [];
  if (!qs.length) return el("div", { class: "empty" }, "No lead waits in a queue.");
  const qd = (q, measure) => ({ figure: "queue", measure, key: q.queue_id });
  return el("table", { class: "tbl-compact" },
    el("thead", {}, el("tr", {}, el("th", { class: "text" }, "Queue"), el("th", { class: "text" }, "Holds"), el("th", {}, "Leads"), el("th", {}, "Overdue"), el("th", {}, "First due"))),
    el("tbody", {}, qs.map((q) => el("tr", {},
      el("td", { class: "text" }, q.queue_id),
      el("td", { class: "text" }, (q.status || "").replace("LEAD_STATUS_", "")),
      el("td", {}, fig(fmtCount(q.leads), `queue.${q.queue_id}.leads`, qd(q, "leads"))),
      el("td", {}, fig(fmtCount(q.overdue), `queue.${q.queue_id}.overdue`, qd(q, "overdue"), n(q.overdue) ? "neg" : "")),
      el("td", {}, fmtWhen(q.first_deadline))))));
}

function slaPanel(res, queuesR) {
  if (res.err) return panel("sla-panel", "SLA compliance", "", null, errorBox(res.err));
  const s = res.ok, t = s.sales_total || {};
  const sd = (row, key, measure) => ({ figure: "sales", measure, row, key });
  const bd = (row, key) => ({ figure: "breaches", row, key });
  const rate = (a, b) => (n(b) ? fmtPct(n(a) / n(b)) : "–");
  // Rates are of the hand-offs due (accepted or contacted, or left past
  // their deadline), so a hand-off left to breach counts against them.
  const kpis = el("div", { class: "kpis" },
    el("div", { class: "kpi" }, el("span", { class: "v" }, fig(rate(t.accepted_within_sla, t.accept_due), "sales.total.accept_rate", sd("", "", "accepted_within_sla"))),
      el("span", { class: "l" }, "accepted within SLA (", fig(fmtCount(t.accepted_within_sla), "sales.total.accepted_within_sla", sd("", "", "accepted_within_sla")), " of ",
        fig(fmtCount(t.accept_due), "sales.total.accept_due", sd("", "", "accept_due")), " due)")),
    el("div", { class: "kpi" }, el("span", { class: "v" }, fig(rate(t.first_attempt_within_sla, t.contact_due), "sales.total.contact_rate", sd("", "", "first_attempt_within_sla"))),
      el("span", { class: "l" }, "first attempt within SLA (", fig(fmtCount(t.first_attempt_within_sla), "sales.total.first_attempt_within_sla", sd("", "", "first_attempt_within_sla")), " of ",
        fig(fmtCount(t.contact_due), "sales.total.contact_due", sd("", "", "contact_due")), " due)")),
    el("div", { class: "kpi" }, el("span", { class: "v num" }, fmtHours(t.median_hours_to_accept)), el("span", { class: "l" }, "median time to accept (",
      fig(fmtCount(t.accepted), "sales.total.accepted", sd("", "", "accepted")), " accepted of ", fig(fmtCount(t.assigned), "sales.total.assigned", sd("", "", "assigned")), " hand-offs)")),
    el("div", { class: "kpi" }, el("span", { class: "v" }, fig(fmtCount(t.breaches), "sales.total.breaches", bd("", ""), n(t.breaches) ? "neg" : "")),
      el("span", { class: "l" }, "SLA breaches by reps")));
  const salesRows = [...(s.teams || []).map((r) => ["team", r]), ...(s.reps || []).map((r) => ["rep", r])];
  const sales = el("table", { class: "tbl-compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Team / rep"), el("th", {}, "Assigned"), el("th", {}, "Accepted"), el("th", {}, "In SLA"), el("th", {}, "Median"), el("th", {}, "Breaches"))),
    el("tbody", {}, salesRows.map(([kind, r]) => el("tr", { class: kind === "team" ? "" : "muted" },
      el("td", { class: "text" }, kind === "team" ? el("b", {}, "team " + (r.key || "(none)")) : "  rep " + r.key),
      el("td", {}, fig(fmtCount(r.assigned), `sales.${kind}.${r.key}.assigned`, sd(kind, r.key, "assigned"))),
      el("td", {}, fig(fmtCount(r.accepted), `sales.${kind}.${r.key}.accepted`, sd(kind, r.key, "accepted"))),
      el("td", {}, fig(rate(r.accepted_within_sla, r.accept_due), `sales.${kind}.${r.key}.accept_rate`, sd(kind, r.key, "accepted_within_sla"))),
      el("td", {}, fmtHours(r.median_hours_to_accept)),
      el("td", {}, fig(fmtCount(r.breaches), `sales.${kind}.${r.key}.breaches`, bd(kind, r.key), n(r.breaches) ? "neg" : ""))))));
  const mk = s.marketing || [];
  const md = (r, measure) => ({ figure: "marketing", measure, month: r.period, segment: r.segment });
  const target = (ok, has) => (has ? el("span", { class: ok ? "met" : "missed" }, ok ? " ✓" : " ✗") : null);
  const marketing = mk.length ? el("table", { class: "tbl-compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Month"), el("th", { class: "text" }, "Segment"), el("th", {}, "MQLs"), el("th", {}, "Accepted"), el("th", {}, "Acceptance"), el("th", {}, "MQL → opp."))),
    el("tbody", {}, mk.map((r) => {
      const tg = r.target;
      return el("tr", {},
        el("td", {}, fmtMonth(r.period)), el("td", { class: "text" }, r.segment || "all segments"),
        el("td", { title: tg ? "target ≥ " + fmtCount(tg.min_mqls) : "no target" }, fig(fmtCount(r.mqls), `marketing.${r.period}.${r.segment}.mqls`, md(r, "mql")), target(r.mqls_met, tg && n(tg.min_mqls))),
        el("td", {}, fig(fmtCount(r.accepted), `marketing.${r.period}.${r.segment}.accepted`, md(r, "accepted"))),
        el("td", { title: (tg ? "target ≥ " + fmtPct(n(tg.min_acceptance_rate_bps) / 10000) : "no target") + "; of " + fmtCount(r.accept_due) + " due" },
          fig(rate(r.accepted, r.accept_due), `marketing.${r.period}.${r.segment}.acceptance`, md(r, "accept_due")), target(r.acceptance_met, tg && n(tg.min_acceptance_rate_bps))),
        el("td", { title: tg ? "target ≥ " + fmtPct(n(tg.min_mql_to_opportunity_bps) / 10000) : "no target" }, fig(fmtPct(r.mql_to_opportunity_rate), `marketing.${r.period}.${r.segment}.opp_rate`, md(r, "opportunity")), target(r.opportunity_met, tg && n(tg.min_mql_to_opportunity_bps))));
    }))) : el("div", { class: "empty" }, "No MQLs in the period.");
  return panel("sla-panel", "SLA compliance", "both directions", null,
    el("h3", { class: "first" }, "Sales: accept and contact marketing's leads in time"), kpis,
    salesRows.length ? el("div", { class: "scroll gap" }, sales) : el("div", { class: "empty" }, "No hand-offs in the period."),
    el("h3", {}, "Marketing: enough MQLs that sales accepts and converts"), el("div", { class: "scroll" }, marketing),
    el("h3", {}, "Queues now: MQLs before routing, escalations before a manager hands them on"), el("div", { class: "scroll" }, queuesTable(queuesR)));
}

const ATTR = { first: "first touch", last: "last touch", linear: "linear" };
function campaignPanel(res, attr) {
  const tools = el("label", {}, "Attribution ",
    el("select", { onchange: (e) => setParams({ attribution: e.target.value }) },
      Object.entries(ATTR).map(([k, v]) => el("option", { value: k, selected: k === attr }, v))));
  if (res.err) {
    const v = (res.err.body && res.err.body.violations) || [];
    const cur = v.find((x) => x.field === "currency");
    const picks = cur ? (cur.description.match(/\b[A-Z]{3}\b/g) || []).map((c) => el("button", { class: "ghost", onclick: () => setParams({ currency: c }) }, c)) : [];
    return panel("campaign-panel", "Campaigns: spend to revenue", "", tools, errorBox(res.err), picks.length ? el("div", { class: "pager" }, "Report in ", picks) : null);
  }
  const r = res.ok, cur = r.currency;
  // Undefined: nothing to divide by, or money in another currency too.
  const undef = (c) => el("span", { class: "undef", title: (c.other_currencies || []).length ? `also in ${c.other_currencies.join(", ")}: not in ${cur}` : "undefined: nothing to divide by" }, "—");
  const d = (c, measure) => ({ figure: "campaign", campaign: c.campaign_id || "", measure, attribution: attr, currency: cur });
  const row = (c, total) => {
    const id = c.campaign_id || "";
    const k = (m) => `campaign.${id || "-"}.${m}`;
    const money = (f) => (f.undefined ? undef(c) : fmtMoney(f.value, cur));
    const roi = c.roi.undefined ? undef(c) : el("span", { class: n(c.roi.value) < 0 ? "neg" : "pos" }, fmtPct(c.roi.value));
    return el("tr", { class: total ? "muted" : "" },
      el("td", { class: "text" }, total ? "No campaign" : [el("b", {}, c.name || id), el("span", { class: "channel" }, channel(c.channel)),
        // Money in other currencies is in none of this row's figures: say so.
        (c.other_currencies || []).length ? el("span", { class: "channel other-cur", title: `figures in ${cur} leave out money in ${c.other_currencies.join(", ")}` }, `also ${c.other_currencies.join(", ")}`) : null]),
      c.spend.undefined ? el("td", { dataset: { k: k("spend") } }, undef(c)) : el("td", {}, fig(fmtMoney(c.spend.value, cur), k("spend"))),
      el("td", {}, fig(fmtCount(c.leads.value), k("leads"), d(c, "captured"))),
      el("td", {}, fig(fmtCount(c.mqls.value), k("mqls"), d(c, "mql"))),
      el("td", {}, fig(fmtCount(c.accepted.value), k("accepted"), d(c, "accepted"))),
      el("td", {}, fig(fmtCount(c.opportunities.value), k("opportunities"), d(c, "opportunity"))),
      el("td", {}, fig(fmtMoney(c.pipeline.value, cur), k("pipeline"), d(c, "opportunity"))),
      el("td", {}, fig(fmtCount(c.won_deals.value), k("won_deals"), d(c, "won"))),
      el("td", {}, fig(fmtMoney(c.won_revenue.value, cur), k("won_revenue"), d(c, "won"))),
      el("td", { dataset: { k: k("cost_per_won_deal") } }, money(c.cost_per_won_deal)),
      el("td", { dataset: { k: k("roi") } }, roi));
  };
  const rows = r.campaigns.map((c) => row(c, false));
  if (r.unattributed && n(r.unattributed.leads.value)) rows.push(row(r.unattributed, true));
  const table = rows.length ? el("div", { class: "scroll" }, el("table", { class: "tbl-compact campaigns" },
    el("thead", {}, el("tr", {}, ["Campaign", "Spend", "Leads", "MQLs", "Accepted", "Opps", "Pipeline", "Won deals", "Won revenue", "Cost / won deal", "ROI"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows))) : el("div", { class: "empty" }, "No campaigns in the period.");
  // Money in other currencies: a way to their reports, as the refusal
  // offered before one was picked.
  const others = [...new Set(r.campaigns.concat(r.unattributed ? [r.unattributed] : []).flatMap((c) => c.other_currencies || []))].filter((c) => c !== cur).sort();
  const switcher = others.length ? el("div", { class: "pager", dataset: { k: "campaign.currencies" } }, "Also in ",
    others.map((c) => el("button", { class: "ghost", onclick: () => setParams({ currency: c }) }, c))) : null;
  return panel("campaign-panel", "Campaigns: spend to revenue", "sorted by won revenue", tools, table, switcher,
    el("div", { class: "note", dataset: { k: "campaign.stamp" } }, `Attribution: ${ATTR[attr]} (stamped on every figure)` + (cur ? ` · currency ${cur}` : "") +
      (attr === "linear" ? " · linear shares are fractional; a campaign's list shows every lead it has a share of" : "")));
}

// What-ifs this page started, by version and period.
const whatIfs = {};
// whatIfShown is the proposal whose what-if the panel shows: the one last
// asked for, else the newest.
let whatIfShown = 0, activeVersion = 0;
function modelPanel(res) {
  if (res.err) return panel("model-panel", "Scoring model", "", null, errorBox(res.err));
  const m = res.ok, p = route().params;
  activeVersion = m.active || 0;
  const pending = m.versions.filter((v) => v.state === "proposed");
  const cards = m.versions.slice(0, 4).map((v) => {
    const teams = ["marketing", "sales"].map((team) => {
      const a = (v.approvals || []).find((x) => x.team === team);
      return el("span", { class: "signoff" + (a ? " ok" : ""), dataset: { k: `model.v${v.version}.${team}` }, title: a ? "approved by " + a.by + ", " + fmtWhen(a.at) : "awaiting " + team },
        (a ? "✓ " : "○ ") + team + (a ? " · " + a.by : ""));
    });
    const badge = { active: el("span", { class: "pill good" }, "active"), superseded: el("span", { class: "pill" }, "superseded"),
      proposed: el("span", { class: "pill warn" }, "awaiting sign-off") }[v.state];
    const rescore = v.state === "active" && v.rescore_started ? (v.rescore_done ? ` · re-scored every lead (${fmtCount(v.rescore_total)} lead events read)` : " · re-scoring…") : "";
    return el("div", { class: "version" + (v.state === "active" ? " active" : ""), dataset: { k: `model.v${v.version}` } },
      el("div", {}, el("span", { class: "title" }, "Version " + v.version + " "), badge,
        el("div", { class: "meta" }, `threshold ${fmtCount(v.threshold)} · ${fmtCount(v.rules)} rules · proposed by ${v.proposed_by || "?"}, ${fmtWhen(v.proposed_at)}` +
          (v.activated_at ? " · active since " + fmtWhen(v.activated_at) : "") + rescore),
        v.description ? el("div", { class: "meta" }, v.description) : null),
      el("div", { class: "signoffs" }, teams,
        v.state === "proposed" ? el("button", { class: "ghost", onclick: () => { whatIfShown = v.version; const box = $("whatif"); if (box) box.dataset.version = v.version; runWhatIf(v.version, true); } }, "What-if") : null));
  });
  const body = m.versions.length ? [el("div", { class: "versions" }, cards)] : [el("div", { class: "empty" }, "No scoring model has been proposed yet.")];
  const target = pending.find((v) => v.version === whatIfShown) || pending[0];
  if (target) {
    const key = whatIfKey(target.version);
    // Once a version and period: a live render that shows a new proposal
    // starts its what-if too.
    const w = whatIfs[key];
    if (!w || (w.state === "failed" && Date.now() - w.failedAt > 10000)) runWhatIf(target.version, false);
    body.push(el("div", { id: "whatif", dataset: { version: target.version } }, whatIfView(whatIfs[key])));
  }
  return panel("model-panel", "Scoring model", m.active ? "version " + m.active + " scores" : "no version active", null, ...body);
}
// Once a proposal, period and active version: activating another makes it
// another comparison.
const whatIfKey = (v) => v + "|" + (route().params.get("from") || "") + "|" + (route().params.get("to") || "") + "|" + activeVersion;
async function runWhatIf(version, fresh) {
  const key = whatIfKey(version);
  whatIfs[key] = { state: "starting", proposed: version };
  const p = reportParams(["from", "to"]); p.set("version", version); if (fresh) p.set("fresh", "true");
  try {
    const { id, started } = await api("whatif", p, { method: "POST", headers: { "Content-Type": "application/json" } });
    for (;;) {
      const w = await api("whatif/" + id);
      w.started = started;
      whatIfs[key] = w;
      // Only into the box of its own version and period: the page may
      // show another now.
      const box = $("whatif"); if (box && box.dataset.version === String(version) && whatIfKey(version) === key) box.replaceChildren(whatIfView(w));
      if (w.state !== "running") break;
      await new Promise((r) => setTimeout(r, 400));
    }
  } catch (e) {
    whatIfs[key] = { state: "failed", error: e.message, proposed: version, failedAt: Date.now() };
    const box = $("whatif"); if (box && box.dataset.version === String(version) && whatIfKey(version) === key) box.replaceChildren(whatIfView(whatIfs[key]));
  }
}
function whatIfView(w) {
  // Until the first answer the active version is not known here.
  const against = w.state === "starting" ? "" : ` against ${w.active ? "version " + w.active : "no active version"}`;
  const title = el("h3", {}, `What-if: version ${w.proposed}${against}, ${periodLabel(route().params)}`);
  if (w.state === "failed") return el("div", {}, title, el("div", { class: "error" }, w.error));
  if (w.state !== "done") {
    const pct = n(w.total) ? (100 * n(w.read)) / n(w.total) : 0;
    return el("div", {}, title, el("div", { class: "progress" }, el("span", { style: { width: pct + "%" } })),
      el("div", { class: "note" }, "Replaying the stream… " + fmtCount(w.read) + (n(w.total) ? " of " + fmtCount(w.total) : "") + " events"));
  }
  const delta = (v) => el("span", { class: n(v) > 0 ? "pos" : n(v) < 0 ? "neg" : "" }, (n(v) > 0 ? "+" : "") + fmtCount(v));
  const cd = (c) => ({ figure: "campaign", campaign: c, measure: "captured", attribution: "first" });
  const row = (r, total) => el("tr", { class: total ? "total" : "" },
    el("td", { class: "text" }, total ? "Total" : r.campaign_id ? el("a", { href: href("/leads", cd(r.campaign_id)) }, r.campaign_id) : "No campaign"),
    el("td", {}, fmtCount(r.leads)), el("td", {}, fmtCount(r.mqls_active) + " → " + fmtCount(r.mqls_proposed)),
    el("td", {}, delta(r.mqls_gained), " / ", delta(-n(r.mqls_lost))),
    el("td", {}, fmtCount(r.won_qualified) + " of " + fmtCount(r.won), n(r.won_missed) ? el("span", { class: "neg" }, " (" + fmtCount(r.won_missed) + " missed)") : null),
    el("td", {}, fmtCount(r.rejected_kept_out) + " of " + fmtCount(r.rejected)));
  return el("div", { dataset: { k: "whatif" } }, title,
    el("div", { class: "scroll" }, el("table", { class: "tbl-compact" },
      el("thead", {}, el("tr", {}, ["Campaign", "Leads", `MQLs: v${w.active || 0} → v${w.proposed}`, "Gained / lost", "Won it qualifies", "Rejected kept out"].map((h) => el("th", {}, h)))),
      el("tbody", {}, w.campaigns.map((r) => row(r, false)), row(w.total_row, true)))),
    el("div", { class: "note" }, "By first-touch campaign. Both versions replayed over the same facts with qualification's scoring, as if each had scored these leads from their capture (the active one's MQLs are what it would say, not what earlier versions said before its activation). Not a forecast of activating the proposal: activation qualifies only new leads and nurtured ones with a re-engagement pending. Nothing is written. Started " + fmtWhen(w.started) + "."));
}

function recentPanel(res) {
  if (res.err) return panel("recent-panel", "Newest leads", "", null, errorBox(res.err));
  const leads = res.ok.leads;
  return panel("recent-panel", "Newest leads", "by capture time", el("a", { href: href("/leads", { all: "1" }) }, "all leads →"),
    leads.length ? leadTable(leads, true) : el("div", { class: "empty" }, "No leads yet."));
}

function leadTable(leads, compact) {
  const now = Date.now();
  const terminal = new Set(["LEAD_STATUS_WON", "LEAD_STATUS_DISQUALIFIED", "LEAD_STATUS_MERGED", "LEAD_STATUS_ERASED"]);
  const head = compact ? ["Lead", "Status", "Owner", "Next step due"] : ["Lead", "Status", "Owner", "Next step due", "Score", "Source", "Segment", "First campaign", "Cycle", "Captured"];
  const when = compact ? fmtShort : fmtWhen;
  return el("div", { class: "scroll" }, el("table", { class: "tbl-compact lead-table" },
    el("thead", {}, el("tr", {}, head.map((h, i) => el("th", { class: i ? "text" : "" }, h)))),
    el("tbody", {}, leads.map((l) => {
      const st = status(l.status);
      const due = ts(l.deadline), overdue = due && due.getTime() < now && !terminal.has(l.status);
      const cells = [
        el("td", { class: "id" }, el("a", { href: href("/lead/" + encodeURIComponent(l.lead_id)), dataset: { lead: l.lead_id } }, shortId(l.lead_id))),
        el("td", { class: "text" }, el("span", { class: "pill st-" + st.replace(/ /g, "-") }, st)),
        el("td", { class: "text" }, owner(l.owner) || "–"),
        el("td", { class: "text" + (overdue ? " overdue" : ""), title: due ? fmtWhen(l.deadline) + (overdue ? ": overdue" : "") : null }, due ? when(l.deadline) + (overdue && !compact ? " (overdue)" : "") : "–"),
      ];
      if (!compact) cells.push(el("td", { class: "text num" }, fmtCount(l.score)), el("td", { class: "text" }, l.source || "–"),
        el("td", { class: "text" }, l.segment || "–"), el("td", { class: "text" }, l.first_campaign_id || "–"), el("td", { class: "text num" }, fmtCount(l.cycle)));
      if (!compact) cells.push(el("td", { class: "text" }, when(l.captured_at)));
      return el("tr", { dataset: { lead: l.lead_id } }, cells);
    }))));
}
// Lead ids are UUIDs or external ids; long ones are cut for the table.
function shortId(id) { return id.length > 14 ? id.slice(0, 8) + "…" + id.slice(-4) : id; }

// ---- the leads behind a figure ----
const FIGURE_NAMES = {
  funnel: { captured: "captured", mql: "reached MQL", accepted: "accepted by sales", opportunity: "became opportunities", won: "won", recycled: "recycled", disqualified: "disqualified" },
  campaign: { captured: "attributed leads", mql: "attributed MQLs", accepted: "attributed accepted leads", opportunity: "attributed opportunities (pipeline)", won: "attributed won deals" },
  sales: { assigned: "handed off", accepted: "accepted", accepted_within_sla: "accepted within SLA", accept_due: "due for acceptance", contacted: "contacted",
    first_attempt_within_sla: "first attempt within SLA", contact_due: "due for a first attempt" },
  marketing: { mql: "MQLs", accepted: "MQLs accepted", rejected: "MQLs rejected", opportunity: "MQLs that became opportunities", accept_due: "MQLs due for acceptance" },
  queue: { leads: "waiting in queue", overdue: "overdue in queue" },
};
function describeFigure(p) {
  const f = p.get("figure"), m = p.get("measure") || "";
  const parts = [];
  if (!f) parts.push(p.get("overdue") ? "overdue leads" : "all leads");
  else if (f === "breaches") parts.push("leads with SLA breaches");
  else parts.push("leads " + ((FIGURE_NAMES[f] || {})[m] || m));
  if (f === "campaign") parts.push("campaign " + (p.get("campaign") || "(none)") + ", " + ATTR[p.get("attribution") || "first"]);
  if (p.get("row")) parts.push(p.get("row") + " " + (p.get("key") || "(none)"));
  if (f === "queue") parts.push(p.get("key") + ", now");
  if (p.get("month")) parts.push(fmtMonth(p.get("month")));
  // Only the filters the list applies: campaign lists take neither,
  // the SLA, marketing and queue lists no source.
  if (p.get("segment") && f !== "campaign" && p.get("row") !== "segment") parts.push("segment " + p.get("segment"));
  if (p.get("source") && (!f || f === "funnel") && p.get("row") !== "source") parts.push("source " + p.get("source"));
  // A marketing row counts its whole month, quarter or year: no period.
  if (f !== "queue" && f !== "marketing") parts.push(periodLabel(p));
  const text = parts.join(" · ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}
async function leadsView(p) {
  const q = new URLSearchParams(p);
  q.delete("group"); q.delete("all");
  if (!q.get("figure")) { q.delete("attribution"); }
  q.set("limit", "100");
  crumbs(el("a", { href: overviewHref() }, "Overview"), "Leads");
  let res;
  try { res = await api("leads", q); } catch (e) { return panel("", "Leads", describeFigure(p), null, errorBox(e)); }
  const total = n(res.total);
  const shown = res.leads.length;
  const count = total >= 0 ? `${fmtCount(total)} lead${total === 1 ? "" : "s"}` + (shown < total ? `, newest ${fmtCount(shown)} shown` : "") : `${fmtCount(shown)} shown`;
  // The SLA figures count hand-offs and breaches; a list counts leads.
  const per = { sales: "hand-off", breaches: "breach" }[p.get("figure")];
  return panel("leads-panel", describeFigure(p), count, el("a", { href: overviewHref(), dataset: { k: "back" } }, "← overview"),
    per ? el("div", { class: "note", dataset: { k: "leads.per" } }, `The figure counts each ${per}; a lead with more than one is listed once.`) : null,
    el("div", { dataset: { k: "leads.total" }, hidden: true }, String(total)),
    shown ? leadTable(res.leads, false) : el("div", { class: "empty" }, "No leads."),
    el("div", { class: "pager" },
      p.get("page") ? el("a", { href: href("/leads", Object.assign(Object.fromEntries(p), { page: "" })), dataset: { k: "leads.first" } }, "← first page") : null,
      p.get("page") && res.next_page ? " · " : null,
      res.next_page ? el("a", { href: href("/leads", Object.assign(Object.fromEntries(p), { page: res.next_page })), dataset: { k: "leads.next" } }, "next page →") : null));
}

// ---- one lead's journey ----
const LANES = ["intake", "qualification", "handoff", "nurture"];
async function leadView(id) {
  crumbs(el("a", { href: overviewHref() }, "Overview"), "Lead " + id);
  let res;
  try { res = await api("lead/" + encodeURIComponent(id)); } catch (e) { return panel("", "Lead " + id, "", null, errorBox(e)); }
  const d = res.detail, l = d ? d.lead : null, steps = res.journey;
  const last = steps[steps.length - 1] || {};
  const f = (label, value) => el("div", { class: "f" }, el("span", {}, label), el("b", { title: String(value) }, value));
  const head = el("div", { class: "lead-head" },
    f("Status", last.status || (l ? status(l.status) : "–")), f("Owner", last.owner || "–"),
    f("Next step due", last.deadline ? fmtWhen(last.deadline) : "–"), f("Journey cycle", fmtCount(last.cycle || (l && l.cycle))),
    f("Score", fmtCount(last.score)), f("Captured", l ? fmtWhen(l.captured_at) : steps.length ? fmtWhen(steps[0].at) : "–"),
    f("Source", (l && l.source) || "–"), f("First / last campaign", l ? (l.first_campaign_id || "–") + " / " + (l.last_campaign_id || "–") : "–"),
    f("Segment", (l && l.segment) || "–"), f("Account", (l && l.account_id) || (l && l.email_domain) || "–"),
    f("Rep", (l && l.rep_id) || "–"), f("Events", fmtCount(steps.length)));
  const cycles = d && d.journeys.length ? el("div", { class: "cycles" }, d.journeys.map((j) => el("span", { class: "cycle-chip" },
    el("b", {}, "Cycle " + j.cycle + ": "), ["mql_at", "assigned_at", "accepted_at", "rejected_at", "opportunity_at", "won_at", "lost_at", "recycled_at"]
      .filter((k) => j[k]).map((k) => k.replace("_at", "").replace("mql", "MQL")).join(" → ") + (j.segment ? " (" + j.segment + ")" : "")))) : null;
  const lanes = LANES.concat(steps.some((s) => s.lane === "other") ? ["other"] : []);
  const grid = el("div", { class: "journey", style: { "--lanes": String(lanes.length) }, id: "journey" },
    el("div", { class: "gutter-h" }, "When · stream #"), lanes.map((ln) => el("div", { class: "lane-h lane-" + ln }, ln)),
    el("div", { class: "state-h" }, "Status · owner · next deadline"));
  steps.forEach((s, i) => {
    if (s.new_cycle) grid.append(el("div", { class: "cycle-band" }, `Cycle ${s.cycle}: qualified again after nurture`));
    const next = steps[i + 1];
    const due = ts(s.deadline);
    const missed = due && (next ? s.missed : due.getTime() < Date.now());
    grid.append(el("div", { class: "gutter" }, el("b", {}, fmtWhen(s.at)), "#" + intFmt.format(s.seq) + (s.actor ? " · " + s.actor : "")));
    for (const ln of lanes) {
      grid.append(el("div", { class: "cell lane-" + ln }, ln === s.lane ? el("div", {
        class: "card step" + (s.recycle ? " recycle" : ""), dataset: { seq: String(s.seq), type: s.type, lane: s.lane }, title: "event " + s.event_id + (s.causation_id ? ", caused by " + s.causation_id : ""),
      }, el("span", { class: "t" }, (s.recycle ? "↺ " : "") + s.type), el("span", { class: "s" }, s.summary), s.amount ? el("span", { class: "a" }, " · " + fmtMoney(s.amount.minor, s.amount.currency)) : null) : null));
    }
    grid.append(el("div", { class: "state" }, el("span", { class: "pill st-" + s.status.replace(/ /g, "-") }, s.status),
      " cycle " + s.cycle, el("span", { class: "owner" }, s.owner || "no owner"),
      due ? el("span", { class: missed ? "missed-deadline" : "" }, "due " + fmtWhen(s.deadline) + (missed ? (next ? " (missed)" : " (overdue)") : "")) : null));
  });
  return el("div", {}, panel("lead-panel", "Lead " + id, l && l.merged_into ? "merged into " + l.merged_into : "", el("a", { href: overviewHref(), dataset: { k: "back" } }, "← overview"), head, cycles),
    el("div", { class: "spacer" }),
    panel("journey-panel", "Journey", "every event in stream order, one lane per service", null, steps.length ? grid : el("div", { class: "empty" }, "No events.")));
}

// ---- wiring ----
function onFilters(e) {
  const t = e.target;
  if (t.id === "f-preset") {
    if (t.value === "custom") return;
    const [from, to] = presetRange(t.value);
    setParams({ from, to });
  } else if (t.id === "f-to") {
    setParams({ to: t.value ? dayAfter(t.value, 1) : "" }); // "through" the day picked (one it cannot read goes as typed, and is said so)
  } else if (t.id === "f-from" || t.id === "f-segment" || t.id === "f-source") {
    setParams({ [t.name]: t.value });
  }
}
function signOut() {
  api("session", null, { method: "DELETE" }).then(() => {
    if (live.es) { live.es.close(); live.es = null; }
    setLive(false);
    showSignIn("signed out");
  }, (e) => { $("view").replaceChildren(panel("", "Sign out", "", null, errorBox(e))); });
}
function init() {
  $("filters").addEventListener("change", onFilters);
  $("signout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("f-lead").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && e.target.value.trim()) location.hash = href("/lead/" + encodeURIComponent(e.target.value.trim())).slice(1);
  });
  window.addEventListener("hashchange", () => render(false));
  $("foot").textContent = "Times in " + Intl.DateTimeFormat().resolvedOptions().timeZone + ". Figures from the projector's read model; journeys straight from the event stream.";
  api("session").then((s) => { $("signout").hidden = !s.auth; if (s.auth && !s.subject) showSignIn(); else start(); }, () => start());
}
let started = false;
function start() {
  delete document.body.dataset.signin;
  if (!started) {
    started = true;
    if (!document.hidden) connectLive();
    // A page kept in the back/forward cache, or a tab in the background,
    // holds no stream: over HTTP/1.1 the browser gives a host six
    // connections, and six pages' streams would take them all. Shown
    // again, it reconnects and refreshes.
    window.addEventListener("pagehide", () => { if (live.es) { live.es.close(); live.es = null; } });
    window.addEventListener("pageshow", (e) => { if (e.persisted && !document.hidden) { connectLive(); render(false); } });
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        if (live.es) { live.es.close(); live.es = null; }
        setLive(false);
      } else if (!live.es && !signingIn) {
        connectLive();
        render(true);
      }
    });
  } else if (!live.connected && !document.hidden) {
    connectLive(); // signed in again after the session ended
  }
  if (live.es && live.gen === -1) {
    // Loaded after the first notice, the page needs no second load for
    // it; a stream slower than a second is not waited for.
    new Promise((resolve) => { live.firstNotice = resolve; setTimeout(resolve, 1000); }).then(() => { live.firstNotice = null; render(false); });
  } else render(false);
}
init();
