// The city over time (issue 26). A date slider over the model's history (/history gives its span) shows the city as
// of a day: the assets added since are hidden in the tiles (by their feature's `id`, in the styler's one show
// expression), the assets removed since are drawn over the city in red from their past geometry, and the vital signs
// are those of that day (/indicators?as_of=). "What changed" between two days colours the changed assets — added
// green, removed red (drawn, as they are no longer in the tiles), renewed blue, changed amber — counts them per
// change, and a click shows a changed asset's fields before and after. Both read /changes?from=&to=&f=geojson,
// followed page by page (`next`) up to MAX_CHANGES features, and drawn in slices so the page stays responsive.
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { bi, biName, kindName } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";
import { normaliseVitals } from "./wall.js";

/** The change kinds /changes names, their colours (the legend's too) and names. */
export const CHANGES = {
  added: { css: "#2fbf4a", zh: "新增", en: "added" },
  removed: { css: "#e5302a", zh: "移除", en: "removed" },
  renewed: { css: "#2f7dff", zh: "更新改造", en: "renewed" },
  changed: { css: "#ffb000", zh: "属性变更", en: "changed" },
};
const COLOURS = Object.fromEntries(Object.entries(CHANGES).map(([k, v]) => [k, Cesium.Color.fromCssColorString(v.css)]));
/** Features read from /changes at most (followed through its `next` links), and asked per page. */
export const MAX_CHANGES = 20000;
const PAGE = 5000;
/** Features turned into overlay geometry per slice of work: a slice stays well under 50 ms. */
const SLICE = 250;
const DAY_MS = 86400000;
export const DAY = /^\d{4}-\d{2}-\d{2}$/;

const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
// Days are UTC days, as the server counts them (/history, as_of, /changes).
const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);

export class Timeline {
  constructor({ viewer, styler, inspector, onChange }) {
    Object.assign(this, { viewer, styler, inspector, onChange });
    this.span = undefined; // {first, today} from /history
    this.date = undefined; // the chosen day (YYYY-MM-DD); undefined: the present
    this.to = undefined; // "what changed" up to this day; undefined: the city as of `date`
    this.diff = false; // the "what changed" box: ticked, a chosen day compares with `to`
    this.features = new Map(); // asset id → the /changes feature, for the inspector and the tests
    this.counts = {}; // change kind → count
    this.truncated = false;
    this.overlay = undefined; // {lines, points, polygons} primitives of the removed assets
    this.generation = 0; // a newer choice cancels an older one's loading and drawing
    this.idle = true; // false while a choice is being loaded and drawn
    this.onUpdate = new Set(); // fn() after the changes shown change (the legend)
    inspector.pickers.push((picked) => this.pick(picked));
    inspector.extras.push((id) => this.fieldsSection(id));
  }

  /** Show the panel when the server has a history; `state` is the link's {date, to}. */
  async start(endpoints, state = {}) {
    if (!endpoints.history) return false;
    this.hasChanges = Boolean(endpoints.changes); // without /changes the slider still moves the vital signs
    let span;
    try {
      span = await getJSON("/history");
    } catch (err) {
      console.warn(`history: ${err.message}`);
      return false;
    }
    if (!span.first || span.first >= span.today) return false; // no past to go back to
    this.span = { first: span.first, today: span.today };
    this.build();
    $("time-panel").hidden = false;
    this.diff = Boolean(state.to);
    if (state.date) await this.set(state.date, state.to);
    else this.syncControls();
    return true;
  }

  build() {
    const { first, today } = this.span;
    const slider = $("time-slider");
    slider.min = "0";
    slider.max = String(Math.round((dayMs(today) - dayMs(first)) / DAY_MS));
    slider.value = slider.max;
    for (const id of ["time-date", "time-to"]) Object.assign($(id), { min: first, max: today });
    $("time-date").value = today;
    $("time-to").value = today;
    $("time-first").textContent = first;
    $("time-today").textContent = today;
    const day = () => isoDay(dayMs(first) + Number(slider.value) * DAY_MS);
    slider.addEventListener("input", () => ($("time-date").value = day())); // the label follows; applied on release
    slider.addEventListener("change", () => this.choose());
    $("time-date").addEventListener("change", () => this.choose());
    $("time-to").addEventListener("change", () => this.choose());
    $("time-diff").addEventListener("change", () => this.choose());
    $("time-now").addEventListener("click", () => this.set(undefined));
  }

  /** Apply what the panel's controls say. */
  choose() {
    const date = $("time-date").value;
    if (!DAY.test(date)) return undefined;
    this.diff = $("time-diff").checked;
    const to = this.diff ? $("time-to").value || this.span.today : undefined;
    return this.set(date, to);
  }

  /** The city as of `date` (undefined: now), or what changed from `date` to `to` when `to` is given. */
  async set(date, to) {
    const generation = ++this.generation;
    this.idle = false;
    const { first, today } = this.span ?? {};
    if (date && first && (date < first || date > today)) date = date < first ? first : today;
    if (to && date && to < date) to = undefined;
    if (date === today && !to) date = undefined;
    this.date = date;
    this.to = date ? to : undefined;
    this.syncControls();
    this.clear();
    this.onChange();
    const vitals = this.loadVitals(generation);
    if (date && !this.hasChanges) {
      $("time-status").replaceChildren(bi("服务器不提供变化查询", "the server has no /changes"));
    } else if (date) {
      const status = $("time-status");
      status.replaceChildren(bi("加载中…", "loading…"));
      status.className = "status";
      try {
        // /changes counts both days: as of a day, the changes from the next day on; between two days, both.
        await this.loadChanges(generation, this.to ? date : isoDay(dayMs(date) + DAY_MS), this.to ?? today);
        if (generation !== this.generation) return;
        await this.show(generation);
        status.replaceChildren(this.truncated ? bi(`仅显示前 ${formatNumber(MAX_CHANGES)} 项`, `first ${formatNumber(MAX_CHANGES)} only`) : "");
      } catch (err) {
        if (generation !== this.generation) return;
        status.replaceChildren(bi("变化不可用", "changes unavailable"), `: ${err.message}`);
        status.className = "status bad";
      }
    } else {
      $("time-status").replaceChildren();
    }
    this.renderCounts();
    await vitals;
    if (generation !== this.generation) return;
    for (const fn of this.onUpdate) fn();
    this.idle = true;
  }

  syncControls() {
    if (!this.span) return;
    const { first, today } = this.span;
    const day = this.date ?? today;
    $("time-date").value = day;
    $("time-slider").value = String(Math.round((dayMs(day) - dayMs(first)) / DAY_MS));
    $("time-diff").checked = this.diff;
    $("time-to").value = this.to ?? (this.diff ? $("time-to").value || today : today);
    $("time-to").disabled = !this.diff;
    document.body.classList.toggle("past", Boolean(this.date));
  }

  /** Every changed asset from `from` to `to` (its feature, by id), following the `next` links up to the cap. */
  async loadChanges(generation, from, to) {
    this.features = new Map();
    this.truncated = false;
    let url = `/changes${query({ from, to, f: "geojson", limit: PAGE })}`;
    while (url && generation === this.generation) {
      const page = await getJSON(url);
      for (const feature of page.features ?? []) {
        const id = feature.properties?.id ?? feature.id;
        if (id !== undefined) this.features.set(String(id), feature);
        if (this.features.size >= MAX_CHANGES) break;
      }
      url = (page.links ?? []).find((l) => l.rel === "next")?.href;
      if (url && this.features.size >= MAX_CHANGES) {
        this.truncated = true;
        url = undefined;
      }
      if (url) url = localPath(url);
    }
  }

  /** As of a day: hide what was added since, draw what was removed. What changed: colour by change too. */
  async show(generation) {
    const hidden = new Set();
    const colours = new Map();
    const removed = [];
    for (const [id, f] of this.features) {
      const change = f.properties?.change;
      if (change === "removed") removed.push(f);
      else if (this.to) colours.set(id, COLOURS[change] ?? COLOURS.changed);
      else if (change === "added") hidden.add(id);
    }
    this.styler.setTime({ hidden, changes: colours });
    await this.drawRemoved(generation, removed);
  }

  /** The removed assets' geometry over the city, in red, pickable; built a slice at a time. */
  async drawRemoved(generation, features) {
    const red = COLOURS.removed;
    const lines = new Cesium.PolylineCollection();
    const points = new Cesium.PointPrimitiveCollection();
    const instances = [];
    const lineMaterial = Cesium.Material.fromType("Color", { color: red });
    for (let start = 0; start < features.length; start += SLICE) {
      if (start) await new Promise((resolve) => setTimeout(resolve, 0));
      if (generation !== this.generation) return;
      for (const f of features.slice(start, start + SLICE)) {
        const id = { cimChange: f.properties?.id ?? f.id };
        for (const part of parts(f.geometry)) {
          if (part.type === "Point") {
            points.add({ position: cartesian(part.coordinates, 2), color: red, pixelSize: 9, outlineColor: Cesium.Color.WHITE, outlineWidth: 1, id });
          } else if (part.type === "LineString") {
            lines.add({ positions: part.coordinates.map((c) => cartesian(c, 1)), width: 4, material: lineMaterial, id });
          } else if (part.type === "Polygon" && part.coordinates[0]?.length >= 4) {
            const ring = part.coordinates[0];
            lines.add({ positions: ring.map((c) => cartesian(c, 1.5)), width: 3, material: lineMaterial, id });
            instances.push(new Cesium.GeometryInstance({
              geometry: new Cesium.PolygonGeometry({
                polygonHierarchy: new Cesium.PolygonHierarchy(ring.map((c) => cartesian(c, 0))),
                height: 1, extrudedHeight: Number(f.properties?.height_m) || 12,
              }),
              attributes: { color: Cesium.ColorGeometryInstanceAttribute.fromColor(red.withAlpha(0.45)) },
              id,
            }));
          }
        }
      }
    }
    const polygons = instances.length
      ? new Cesium.Primitive({ geometryInstances: instances, appearance: new Cesium.PerInstanceColorAppearance({ translucent: true, closed: true }) })
      : undefined;
    const primitives = this.viewer.scene.primitives;
    this.overlay = { lines: primitives.add(lines), points: primitives.add(points), polygons: polygons && primitives.add(polygons), count: features.length };
    this.viewer.scene.requestRender();
    if (polygons) polygons.readyPromise?.then?.(() => this.viewer.scene.requestRender());
  }

  clear() {
    const primitives = this.viewer.scene.primitives;
    for (const p of Object.values(this.overlay ?? {})) if (p && typeof p === "object") primitives.remove(p);
    this.overlay = undefined;
    this.features = new Map();
    this.styler.setTime({ hidden: new Set(), changes: new Map() });
  }

  renderCounts() {
    const counts = {};
    for (const f of this.features.values()) counts[f.properties?.change] = (counts[f.properties?.change] ?? 0) + 1;
    this.counts = counts;
    const heading = !this.date ? "" : this.to
      ? bi(`${this.date} 至 ${this.to} 的变化`, `Changes ${this.date} → ${this.to}`)
      : bi(`${this.date} 以来的变化（新增的已隐藏，移除的以红色显示）`, `Since ${this.date} (added since: hidden; removed since: red)`);
    const chips = Object.entries(CHANGES).filter(([k]) => this.date && (this.to || k === "added" || k === "removed")).map(([k, c]) =>
      el("span", { class: "change-count", "data-change": k },
        el("span", { class: "swatch", style: `background:${c.css}` }), bi(c.zh, c.en), " ", el("b", {}, formatNumber(counts[k] ?? 0))));
    $("time-counts").replaceChildren(...(this.date && this.hasChanges ? [el("div", { class: "hint" }, heading), ...chips] : []));
  }

  /** The vital signs as of the chosen day (now when none), in the panel. */
  async loadVitals(generation) {
    const list = $("time-vitals");
    try {
      const body = await getJSON(`/indicators${query({ as_of: this.to ?? this.date })}`);
      if (generation !== this.generation) return;
      list.replaceChildren(...normaliseVitals(body).map((v) =>
        el("div", { class: `vital${v.bad ? " bad" : ""}`, "data-vital": v.id }, el("span", { class: "value" }, v.value), " ", el("span", { class: "label" }, v.label))));
    } catch (err) {
      if (generation === this.generation) list.replaceChildren(el("div", { class: "hint" }, bi("城市体征不可用", "vital signs unavailable"), `: ${err.message}`));
    }
  }

  /** The day the vital signs are asked for (undefined: now), for the wall's panel. */
  asOf() {
    return this.to ?? this.date;
  }

  /** A removed asset's overlay opens its fields as they were. */
  pick(picked) {
    const id = picked?.id?.cimChange ?? picked?.primitive?.id?.cimChange;
    if (id === undefined) return false;
    const f = this.features.get(String(id));
    this.inspector.open(String(id), {}, { detail: false });
    if (f?.properties?.name) $("inspect-title").replaceChildren(biName(f.properties.name));
    return true;
  }

  /** The inspector's section for a changed asset: its change and each changed field before and after. */
  fieldsSection(id) {
    const p = this.features.get(String(id))?.properties;
    if (!p || !this.date) return undefined;
    const c = CHANGES[p.change] ?? CHANGES.changed;
    const rows = fieldRows(p).map(([field, before, after]) =>
      el("tr", { "data-field": field }, el("td", { translate: "no" }, field), el("td", { translate: "no" }, text(before)), el("td", { translate: "no" }, text(after))));
    return el("div", { class: "section", id: "inspect-change" },
      el("h3", {}, el("span", { class: "swatch", style: `background:${c.css}` }), " ", bi(c.zh, c.en), " ",
        el("span", { class: "sub" }, this.to ? `${this.date} → ${this.to}` : `${this.date} → ${this.span.today}`)),
      p.kind ? el("p", { class: "crumbs" }, bi(...kindName(p.kind)), " ", biName(p.name || "")) : "",
      rows.length
        ? el("table", { class: "props" }, el("thead", {}, el("tr", {}, el("th", {}, bi("字段", "field")), el("th", {}, bi("之前", "before")), el("th", {}, bi("之后", "after")))), el("tbody", {}, rows))
        : "");
  }
}

/** [[field, before, after]] from a change's properties: `fields` as a list with `before`/`after` objects, or as
 * {field: {before, after}}. */
export function fieldRows(p) {
  const fields = p.fields ?? [];
  if (Array.isArray(fields)) return fields.map((name) => [name, p.before?.[name], p.after?.[name]]);
  return Object.entries(fields).map(([name, v]) => [name, v?.before, v?.after]);
}

function text(value) {
  if (value === undefined || value === null || value === "") return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** A link the server wrote (absolute, maybe with another host name) as a path on this page's server. */
function localPath(href) {
  const url = new URL(href, window.location.href);
  return `${url.pathname}${url.search}`;
}

function parts(geometry) {
  if (!geometry) return [];
  if (geometry.type === "GeometryCollection") return geometry.geometries.flatMap(parts);
  if (geometry.type.startsWith("Multi")) return geometry.coordinates.map((coordinates) => ({ type: geometry.type.slice(5), coordinates }));
  return [geometry];
}

function cartesian([lon, lat], height) {
  return Cesium.Cartesian3.fromDegrees(lon, lat, height);
}
