// One case in full (GET /cases/{id}): category, state, severity, unit, areas, deadline, its timeline (each step with
// time, actor, action, note and photos) and the assets involved (a click opens them in the asset inspector). Reloaded
// when a live change of the open case arrives.
import { getJSON } from "./api.js";
import { ACTIONS, bi, biText, kindName, LEVELS, pair, SEVERITIES, SOURCES, STATES } from "./i18n.js";
import { $, el } from "./ui.js";
import { flyToPoint } from "./viewer.js";

const TIME = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});

/** An ISO instant as Shanghai time, "2026/11/03 16:05". */
export function shanghaiTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : TIME.format(date);
}

/** A duration in seconds as "2 h 05 min", "3 d 4 h" or "12 min" (2小时05分, 3天4小时, 12分钟), in the language. */
export function duration(seconds) {
  const s = Math.abs(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mm = String(m).padStart(2, "0");
  if (d) return biText(`${d}天${h}小时`, `${d} d ${h} h`);
  if (h) return biText(`${h}小时${mm}分`, `${h} h ${mm} min`);
  return biText(`${m}分钟`, `${m} min`);
}

/** Who took a step: the machine's dispatch by name, a person or unit as the data has it. */
const ACTORS = {
  machine: ["系统自动", "machine"],
  system: ["系统", "system"],
  hotline: ["12345热线", "hotline"],
  "command-centre": ["指挥中心", "command centre"],
};

export class CasePanel {
  constructor({ viewer, inspector, areaName = (code) => code }) {
    Object.assign(this, { viewer, inspector, areaName });
    this.current = undefined;
    this.version = undefined;
    $("case-close").addEventListener("click", () => this.close());
  }

  async open(id, { fly = false } = {}) {
    this.current = id;
    document.body.classList.add("case-open");
    $("case-panel").hidden = false;
    $("case-title").replaceChildren(id);
    $("case-body").replaceChildren(el("p", { class: "hint", id: "case-loading" }, bi("加载中…", "loading…")));
    try {
      const feature = await getJSON(`/cases/${encodeURIComponent(id)}`);
      if (this.current !== id) return;
      this.version = feature.properties?.version;
      this.render(feature);
      const coords = feature.geometry?.coordinates;
      if (fly && coords) flyToPoint(this.viewer, coords[0], coords[1], { range: 700 });
    } catch (err) {
      if (this.current !== id) return;
      $("case-body").replaceChildren(el("p", { class: "hint", id: "case-error" }, bi("无法加载案件", "case unavailable"), `: ${err.message}`));
    }
  }

  /** Live changes: reload the open case when one of them is a newer version of it. */
  changed(changes) {
    const mine = changes.find((c) => c.id === this.current);
    if (mine && (mine.version ?? Infinity) > (this.version ?? 0)) this.open(this.current);
  }

  render(feature) {
    const p = feature.properties ?? {};
    const [czh, cen] = [p.category_zh ?? p.category, p.category_en ?? p.category];
    $("case-title").replaceChildren(bi(czh, cen));
    const [szh, sen] = pair(STATES, p.state);
    const [vzh, ven] = pair(SEVERITIES, p.severity);
    const [ozh, oen] = pair(SOURCES, p.source);
    const [lzh, len] = pair(LEVELS, p.level);
    const rows = [
      [bi("编号", "case"), el("code", {}, p.id ?? feature.id)],
      p.title ? [bi("标题", "title"), el("span", { translate: "no" }, p.title)] : undefined,
      [bi("状态", "state"), el("span", { class: `state-tag state-${p.state}`, "data-state": p.state }, bi(szh, sen)),
        p.resolution ? ` (${p.resolution})` : ""],
      [bi("紧急程度", "severity"), el("span", { class: `sev-text sev-${p.severity}` }, bi(vzh, ven))],
      [bi("来源", "source"), bi(ozh, oen), p.dispatched_by_machine ? el("span", { class: "hint" }, " · ", bi("机器派遣", "machine dispatch")) : ""],
      [bi("责任单位", "unit"), this.unitName?.(p) ?? p.unit_name ?? p.unit_id ?? "—"],
      [bi("层级", "level"), bi(lzh, len)],
      [bi("区域", "areas"), [p.district, p.street, p.grid_cell].filter(Boolean).map(this.areaName).join(" › ") || "—"],
      [bi("上报时间", "reported"), shanghaiTime(p.reported_at)],
      [bi("处置时限", "deadline"), shanghaiTime(p.deadline), " ", deadlineNote(p)],
    ].filter(Boolean);
    const table = el("table", { class: "props" }, el("tbody", {}, rows.map(([label, ...value]) =>
      el("tr", {}, el("td", {}, label), el("td", {}, ...value)))));
    const body = $("case-body");
    body.replaceChildren(table);
    if (p.description) body.append(el("p", { class: "description", translate: "no" }, p.description)); // the reporter's words
    if (p.allowed_actions?.length) {
      body.append(el("p", { class: "hint" }, bi("下一步", "next"), ": ",
        p.allowed_actions.flatMap((a, i) => [i ? " · " : "", bi(...pair(ACTIONS, a))])));
    }
    body.append(section(bi("处置过程", "Timeline"), timeline(feature.timeline ?? [])));
    const assets = feature.assets ?? (p.asset_ids ?? []).map((id) => ({ id }));
    if (assets.length) {
      body.append(section(bi("涉及设施", "Assets"), el("ul", { class: "list", id: "case-assets" }, assets.map((a) =>
        el("li", { "data-asset": a.id, onclick: () => this.inspector.open(a.id, {}, { fly: true }) },
          el("a", { translate: "no" }, a.name || a.id),
          el("span", { class: "sub" }, " ", a.kind ? bi(...kindName(a.kind)) : "", " ", el("code", {}, a.id)))))));
    }
    if (p.alert_ids?.length) {
      body.append(el("p", { class: "hint" }, bi("关联告警", "alerts"), ": ", p.alert_ids.join(", ")));
    }
  }

  close() {
    this.current = undefined;
    $("case-panel").hidden = true;
    document.body.classList.remove("case-open");
  }
}

function deadlineNote(p) {
  if (!p.deadline || p.state === "closed") return "";
  const left = (new Date(p.deadline).getTime() - Date.now()) / 1000;
  if (p.overdue || left < 0) return el("span", { class: "overdue-tag" }, bi("超期", "overdue"), ` ${duration(left)}`);
  return el("span", { class: "hint" }, bi("剩余", "left"), ` ${duration(left)}`);
}

function timeline(events) {
  if (!events.length) return el("p", { class: "hint" }, bi("暂无记录", "no steps yet"));
  return el("ol", { class: "timeline", id: "case-timeline" }, events.map((e) => {
    const [azh, aen] = pair(ACTIONS, e.action);
    const [from, to] = [pair(STATES, e.from_state), pair(STATES, e.to_state)];
    const move = e.from_state && e.to_state && e.from_state !== e.to_state
      ? [" ", bi(`${from[0]} → ${to[0]}`, `${from[1]} → ${to[1]}`)] : "";
    const photos = (e.photos ?? []).map((url, i) =>
      el("a", { href: url, target: "_blank", rel: "noopener", class: "photo" }, `📷 ${i + 1}`));
    return el("li", { "data-action": e.action, "data-seq": e.seq },
      el("div", { class: "when" }, shanghaiTime(e.at)),
      el("div", {}, el("strong", {}, bi(azh, aen)), el("span", { class: "hint" }, move)),
      el("div", { class: "sub" }, [ACTORS[e.actor] ? bi(...ACTORS[e.actor]) : e.actor,
        e.unit_id && e.unit_id !== e.actor ? e.unit_id : ""].filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]))),
      e.note ? el("div", { class: "note" }, e.note) : "",
      photos.length ? el("div", { class: "photos" }, photos) : "");
  }));
}

function section(title, content) {
  return el("div", { class: "section" }, el("h3", {}, title), content);
}
