// The wall's case board: this month's on-time rate, open and overdue cases, city-wide and by district
// (/indicators/cases and /cases/heat), and the ticker's NEW CASES (category, place, unit) from /cases and the live
// socket, in place of raw alerts.
import { getJSON, query } from "./api.js";
import { bi, biText } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";
import { shanghaiTime } from "./casepanel.js";
import { HEAT_RAMP } from "./areas.js";

const TICKER_MAX = 12;
const LIVE_REFRESH_MS = 8000;
const RECENT_H = 24;

/** "2026-11": the month now in Shanghai, the period the wall assesses. */
export function shanghaiMonth(now = new Date()) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit" })
    .formatToParts(now);
  const get = (type) => parts.find((p) => p.type === type).value;
  return `${get("year")}-${get("month")}`;
}

export class CaseBoard {
  constructor({ cases, areas }) {
    Object.assign(this, { cases, areas });
    this.on = false;
    this.recent = []; // newest first: {id, category, place, unit, at}
    this.timer = undefined;
    cases.onLive((changes) => this.receive(changes));
  }

  async set(on) {
    this.on = on;
    $("case-board").hidden = !on;
    if (on) await this.loadRecent(); // the figures come with the wall's refresh
  }

  /** The figures by district: opened, on-time rate from the assessment, open and overdue from the heat counts. */
  async refresh() {
    const period = shanghaiMonth();
    const [indicators, heat] = await Promise.all([
      getJSON(`/indicators/cases${query({ level: "district", period })}`).catch((err) => {
        console.warn(`case indicators: ${err.message}`);
        return { rows: [] };
      }),
      getJSON(`/cases/heat${query({ level: "district" })}`).catch((err) => {
        console.warn(`case heat: ${err.message}`);
        return { counts: {}, overdue: {} };
      }),
    ]);
    const rows = (indicators.rows ?? []).map((r) => ({
      ...r,
      open: heat.counts?.[r.code] ?? 0,
      overdueNow: heat.overdue?.[r.code] ?? r.overdue_open ?? 0,
    }));
    // Districts with open cases but nothing in this month's assessment still show.
    for (const code of Object.keys(heat.counts ?? {})) {
      if (rows.some((r) => r.code === code)) continue;
      const area = this.areas?.area(code);
      rows.push({ code, name: area?.properties?.name ?? code, name_en: area?.properties?.name_en,
        open: heat.counts[code], overdueNow: heat.overdue?.[code] ?? 0, on_time_rate: null, handled: 0 });
    }
    rows.sort((a, b) => b.open - a.open || String(a.code).localeCompare(String(b.code)));
    const sum = (key) => rows.reduce((n, r) => n + (Number(r[key]) || 0), 0);
    const handled = sum("handled");
    const onTime = handled ? sum("handled_on_time") / handled : null;
    const dispatched = sum("dispatched");
    const machine = dispatched ? sum("dispatched_by_machine") / dispatched : null;
    const open = sum("open");
    const overdue = sum("overdueNow");
    $("case-headline").replaceChildren(
      figure("on-time", percent(onTime), bi("按时处置率", "on-time rate"), onTime !== null && onTime < 0.8),
      figure("open", formatNumber(open), bi("未结案", "open cases")),
      figure("overdue", formatNumber(overdue), bi("超期", "overdue"), overdue > 0),
      figure("machine", percent(machine), bi("机器派遣", "machine dispatch")),
    );
    $("case-period").textContent = `${period} · ${biText("按区", "by district")}`;
    const head = el("tr", {}, el("th", {}, bi("区", "district")), el("th", {}, bi("未结", "open")),
      el("th", {}, bi("超期", "overdue")), el("th", {}, bi("按时率", "on time")), el("th", {}, bi("本月立案", "opened")));
    const body = rows.slice(0, 16).map((r) => el("tr", { "data-district": r.code },
      el("td", {}, biText(r.name, r.name_en)),
      el("td", { class: "num" }, formatNumber(r.open)),
      el("td", { class: `num${r.overdueNow ? " bad" : ""}` }, formatNumber(r.overdueNow)),
      el("td", { class: `num${r.on_time_rate !== null && r.on_time_rate < 0.8 ? " bad" : ""}` }, percent(r.on_time_rate)),
      el("td", { class: "num" }, formatNumber(r.opened ?? 0))));
    // The key of the districts' fill on the map (the side panel's legend is not on the wall).
    const most = Math.max(1, ...rows.map((r) => r.open));
    const key = el("tr", { class: "heat-key" }, el("td", { colspan: 5 }, bi("地图填色：未结案件", "map fill: open cases"),
      " 1 ", ...HEAT_RAMP.map((c) => el("span", { class: "swatch", style: `background:${c}` })), ` ${formatNumber(most)}`));
    $("case-districts").replaceChildren(el("thead", {}, head), el("tbody", {}, body),
      ...(open ? [el("tfoot", {}, key)] : []));
  }

  /** The newest cases reported in the last day, for the ticker. */
  async loadRecent() {
    const since = new Date(Date.now() - RECENT_H * 3600 * 1000).toISOString();
    try {
      const body = await getJSON(`/cases${query({ since, limit: 200 })}`);
      const items = (body.features ?? [])
        .map((f) => this.item(f.properties))
        .sort((a, b) => String(b.at).localeCompare(String(a.at)));
      const known = new Set(this.recent.map((r) => r.id));
      this.recent = [...this.recent, ...items.filter((i) => !known.has(i.id))]
        .sort((a, b) => String(b.at).localeCompare(String(a.at)))
        .slice(0, TICKER_MAX);
    } catch (err) {
      console.warn(`recent cases: ${err.message}`);
    }
    this.renderTicker();
  }

  receive(changes) {
    const fresh = changes.filter(isNew);
    if (fresh.length) {
      const known = new Set(this.recent.map((r) => r.id));
      const items = fresh.filter((c) => !known.has(c.id)).map((c) => this.item(c, new Date().toISOString()));
      this.recent = [...items.reverse(), ...this.recent].slice(0, TICKER_MAX);
      if (this.on) this.renderTicker();
    }
    if (this.on && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (this.on) this.refresh();
      }, LIVE_REFRESH_MS);
    }
  }

  /** A ticker item from a case's properties (full, from /cases, or partial, from the live socket). */
  item(p, at) {
    const category = this.cases.categoryOf(p);
    const place = this.cases.place(p);
    return {
      id: p.id,
      at: p.reported_at ?? at,
      severity: p.severity,
      text: [biText(category.zh, category.en), place, this.cases.unitName(p) ?? p.unit_id]
        .filter(Boolean).join(" · "),
    };
  }

  renderTicker() {
    if (!this.on) return;
    const label = biText("新案件", "NEW CASES");
    const text = this.recent.length
      ? this.recent.map((r) => `● ${label} ${shanghaiTime(r.at).slice(-5)} ${r.text}`).join("     ")
      : biText("暂无新案件", "no new cases");
    const node = $("ticker-text");
    if (node.textContent !== text) node.textContent = text;
    $("ticker").classList.add("cases");
  }
}

/**
 * Whether a live change is of a case just reported. The hub sends only the newest change of each case per tick, so
 * a case reported, filed and dispatched by machine within one tick arrives as its dispatch (version 3).
 */
function isNew(change) {
  if (change.action === "report") return true;
  return (change.action === "file" || change.action === "dispatch") && (change.version ?? Infinity) <= 3;
}

function figure(id, value, label, bad = false) {
  return el("div", { class: `vital${bad ? " bad" : ""}`, "data-case-figure": id },
    el("div", { class: "value" }, value), el("div", { class: "label" }, label));
}

function percent(rate) {
  return rate === null || rate === undefined ? "—" : `${formatNumber(rate * 100, 1)}%`;
}
