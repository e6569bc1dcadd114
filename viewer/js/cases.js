// Cases (案件) on the map and in the side panel: GET /cases with the filters (state, category, unit, area, overdue),
// drawn as points coloured by state, sized by severity and ringed when overdue; kept current by the live socket's
// `cases` changes and a periodic refresh. A click on a point or a row opens the case panel (casepanel.js).
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { bi, biText, OPEN_STATES, pair, STATES } from "./i18n.js";
import { $, el } from "./ui.js";
import { flyToPoint } from "./viewer.js";

export const STATE_COLOURS = {
  reported: "#ff6b6b",
  filed: "#ff9f43",
  dispatched: "#f0b429",
  in_progress: "#46b1e1",
  handled: "#2ec4b6",
  verified: "#3fb950",
  closed: "#8d97a5",
};
const OVERDUE_RING = Cesium.Color.fromCssColorString("#ff3df2");
const RING = Cesium.Color.fromCssColorString("#0e1116");
const SIZES = { normal: 9, urgent: 13, critical: 17 };
const LIMIT = 2000; // points drawn at once; the count says how many more matched
const LIST_MAX = 200;
const REFRESH_S = 30;
const LIVE_DEBOUNCE_MS = 2500;

export class Cases {
  constructor({ viewer, panel, onChange }) {
    Object.assign(this, { viewer, panel, onChange });
    this.available = false;
    this.categories = new Map(); // id → {id, code, zh, en, hours}
    this.units = new Map(); // id → {id, name, name_en, …}
    this.features = new Map(); // case id → GeoJSON feature (properties as /cases gives them)
    this.markers = new Map(); // case id → PointPrimitive
    this.points = viewer.scene.primitives.add(new Cesium.PointPrimitiveCollection());
    this.filters = { states: new Set(OPEN_STATES), category: "", unit: "", area: "", overdue: false };
    this.matched = 0;
    this.timer = undefined;
    this.liveTimer = undefined;
    this.request = undefined;
    this.listeners = new Set(); // fn(changes) for each live batch of case changes (the wall's ticker)
    this.areaName = (code) => code; // an area's name from its code; main.js hands the areas layer's
  }

  /**
   * Whether the server has cases: the config's endpoints say so or, where they do not tell, /collections lists the
   * cases collection (a server runs the case service). Never probed: a 404 would be a console error in the page.
   */
  async start(endpoints, collections) {
    const listed = collections.some((c) => c.id === "cases");
    if (!(endpoints.cases ?? listed)) return false;
    try {
      const [categories, units] = await Promise.all([
        getJSON("/cases/categories"),
        getJSON("/cases/units").catch(() => []),
      ]);
      for (const c of categories) this.categories.set(c.id, c);
      for (const u of units) this.units.set(u.id, u);
    } catch (err) {
      console.warn(`cases: ${err.message}`);
      $("cases-panel").hidden = false;
      $("cases-status").textContent = `${biText("案件不可用", "cases unavailable")}: ${err.message}`;
      return false;
    }
    this.available = true;
    $("cases-panel").hidden = false;
    this.buildFilters();
    await this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_S * 1000);
    return true;
  }

  buildFilters() {
    const chips = Object.keys(STATES).map((state) => {
      const box = el("input", { type: "checkbox", "data-state": state, checked: this.filters.states.has(state) });
      box.addEventListener("change", () => {
        if (box.checked) this.filters.states.add(state);
        else this.filters.states.delete(state);
        this.refresh();
      });
      const [zh, en] = STATES[state];
      return el("label", { class: "chip", title: biText(zh, en) }, box,
        el("span", { class: "dot", style: `background:${STATE_COLOURS[state]}` }), bi(zh, en));
    });
    $("case-states").replaceChildren(...chips);
    const category = $("case-category");
    category.replaceChildren(el("option", { value: "" }, biText("全部类别", "all categories")),
      ...[...this.categories.values()].map((c) => el("option", { value: c.id }, biText(c.zh, c.en))));
    const unit = $("case-unit");
    unit.replaceChildren(el("option", { value: "" }, biText("全部单位", "all units")),
      ...[...this.units.values()].map((u) => el("option", { value: u.id }, biText(u.name, u.name_en))));
    category.onchange = () => this.setFilter({ category: category.value });
    unit.onchange = () => this.setFilter({ unit: unit.value });
    $("case-area").replaceChildren(el("option", { value: "" }, biText("全市", "whole city")));
    $("case-area").onchange = (e) => this.setFilter({ area: e.target.value });
    $("case-overdue").onchange = (e) => this.setFilter({ overdue: e.target.checked });
  }

  /** Offer the districts (from the areas layer) in the area filter. */
  setAreas(areas) {
    const select = $("case-area");
    const options = areas.map((a) => el("option", { value: a.code }, biText(a.name, a.name_en)));
    select.replaceChildren(el("option", { value: "" }, biText("全市", "whole city")), ...options);
    select.value = this.filters.area;
  }

  setFilter(change) {
    Object.assign(this.filters, change);
    if (change.area !== undefined && $("case-area").value !== change.area) {
      const select = $("case-area");
      if (![...select.options].some((o) => o.value === change.area)) {
        select.append(el("option", { value: change.area }, change.areaName ?? change.area));
      }
      select.value = change.area;
    }
    this.onChange?.();
    return this.refresh();
  }

  params(extra = {}) {
    const f = this.filters;
    return {
      state: [...f.states].join(",") || "none",
      category: f.category,
      unit: f.unit,
      area: f.area,
      overdue: f.overdue ? "true" : "",
      limit: LIMIT,
      ...extra,
    };
  }

  /** Fetch the cases the filters select and redraw; a refresh overtaken by a newer one is dropped. */
  async refresh() {
    if (!this.available) return;
    this.request?.abort();
    const controller = new AbortController();
    this.request = controller;
    if (!this.filters.states.size) {
      this.replace([], 0);
      return;
    }
    try {
      this.lastQuery = `/cases${query(this.params())}`;
      const body = await getJSON(this.lastQuery, { signal: controller.signal });
      if (this.request !== controller) return;
      this.replace(body.features ?? [], body.numberMatched ?? body.features?.length ?? 0);
      $("cases-status").textContent = "";
    } catch (err) {
      if (err.name === "AbortError") return;
      $("cases-status").textContent = `${biText("加载失败", "failed")}: ${err.message}`;
    }
  }

  replace(features, matched) {
    this.matched = matched;
    const seen = new Set();
    for (const f of features) {
      seen.add(f.id);
      this.features.set(f.id, f);
      this.paint(f.id);
    }
    for (const id of [...this.features.keys()]) if (!seen.has(id)) this.drop(id);
    this.renderList();
  }

  drop(id) {
    this.features.delete(id);
    const marker = this.markers.get(id);
    if (marker) this.points.remove(marker);
    this.markers.delete(id);
  }

  paint(id) {
    const f = this.features.get(id);
    const p = f?.properties;
    const coords = f?.geometry?.type === "Point" ? f.geometry.coordinates : undefined;
    let marker = this.markers.get(id);
    if (!coords) {
      if (marker) this.points.remove(marker);
      this.markers.delete(id);
      return;
    }
    if (!marker) {
      marker = this.points.add({
        disableDepthTestDistance: Number.POSITIVE_INFINITY, // a case in a street canyon is still seen
        scaleByDistance: new Cesium.NearFarScalar(800, 1.3, 60000, 0.6),
        id: { cimCaseId: id },
      });
      this.markers.set(id, marker);
    }
    marker.position = Cesium.Cartesian3.fromDegrees(coords[0], coords[1], 8);
    marker.color = Cesium.Color.fromCssColorString(STATE_COLOURS[p.state] ?? "#ffffff");
    marker.pixelSize = SIZES[p.severity] ?? SIZES.normal;
    marker.outlineColor = p.overdue ? OVERDUE_RING : RING;
    marker.outlineWidth = p.overdue ? 3 : 1;
    this.viewer.scene.requestRender();
  }

  /** Whether a case's (possibly partial) properties pass the filters the client can check itself. */
  passes(p) {
    const f = this.filters;
    if (!f.states.has(p.state)) return false;
    if (f.category && p.category !== f.category) return false;
    if (f.unit && p.unit_id !== f.unit) return false;
    return true;
  }

  /** A batch of live case changes ({id, state, category, severity, unit_id, district, lon, lat, version, action}). */
  receive(changes) {
    if (!this.available || !changes?.length) return;
    for (const c of changes) {
      const known = this.features.get(c.id);
      if (known && (known.properties.version ?? 0) > (c.version ?? 0)) continue; // an older change came late
      const properties = { ...(known?.properties ?? { id: c.id }), ...stripPosition(c) };
      if (!this.passes(properties)) {
        if (known) this.drop(c.id);
        continue;
      }
      // A case of another area, or one newly overdue, is only known after the next full fetch below.
      const geometry = c.lon != null && c.lat != null ? { type: "Point", coordinates: [c.lon, c.lat] } : known?.geometry;
      this.features.set(c.id, { type: "Feature", id: c.id, geometry: geometry ?? null, properties });
      this.paint(c.id);
    }
    this.renderList();
    for (const fn of this.listeners) fn(changes);
    this.panel.changed(changes);
    clearTimeout(this.liveTimer);
    this.liveTimer = setTimeout(() => this.refresh(), LIVE_DEBOUNCE_MS);
  }

  onLive(fn) {
    this.listeners.add(fn);
  }

  renderList() {
    const rows = [...this.features.values()]
      .sort((a, b) => String(b.properties.reported_at ?? "").localeCompare(String(a.properties.reported_at ?? "")))
      .slice(0, LIST_MAX);
    const shown = this.features.size;
    $("cases-count").textContent = this.matched > shown ? `${shown} / ${this.matched}` : `${shown}`;
    const list = $("case-list");
    if (!rows.length) {
      list.replaceChildren(el("li", { class: "empty" }, bi("没有符合条件的案件", "no cases match")));
      return;
    }
    list.replaceChildren(...rows.map((f) => this.row(f)));
  }

  row(f) {
    const p = f.properties;
    const category = this.categoryOf(p);
    const [szh, sen] = pair(STATES, p.state);
    return el("li", {
      class: `case sev-${p.severity}${p.overdue ? " overdue" : ""}`,
      "data-case": f.id,
      onclick: () => this.open(f.id, { fly: true }),
    },
    el("span", { class: "dot", style: `background:${STATE_COLOURS[p.state] ?? "#fff"}` }),
    bi(category.zh, category.en),
    el("span", { class: "state-tag" }, bi(szh, sen)),
    p.overdue ? el("span", { class: "overdue-tag" }, bi("超期", "overdue")) : "",
    // The title is the reporter's words (data, in whatever language); the place and unit follow the language.
    el("div", { class: "sub" }, [p.title && el("span", { translate: "no" }, p.title), this.place(p), this.unitName(p)]
      .filter(Boolean).flatMap((part, i) => (i ? [" · ", part] : [part]))));
  }

  /** The responsible unit's name in the chosen language, where the units list knows it. */
  unitName(p) {
    const unit = this.units.get(p.unit_id);
    return unit ? biText(unit.name, unit.name_en) : p.unit_name;
  }

  /** "黄浦区 南京东路街道": a case's district and street by name, where the areas layer knows them. */
  place(p) {
    return [p.district, p.street].filter(Boolean).map((code) => this.areaName(code)).join(" ");
  }

  categoryOf(p) {
    const c = this.categories.get(p.category);
    return { zh: p.category_zh ?? c?.zh ?? p.category, en: p.category_en ?? c?.en ?? p.category };
  }

  async open(id, { fly = false } = {}) {
    const f = this.features.get(id);
    const coords = f?.geometry?.coordinates;
    if (fly && coords) flyToPoint(this.viewer, coords[0], coords[1], { range: 700 });
    await this.panel.open(id, { fly: fly && !coords });
  }
}

function stripPosition({ lon, lat, action, ...rest }) {
  void lon;
  void lat;
  void action;
  return rest;
}
