// The administrative areas as a layer: district (区), street/town (街镇) and grid cell (网格) boundaries from the OGC
// API collections of those kinds, and open cases per area as a heat layer (/cases/heat).
//
// Thousands of polygons must not slow the viewer: boundaries are outlines only, batched into one primitive per kind;
// streets show below STREET_MAX_M of camera height and grid cells below GRID_MAX_M, where the cells in view are
// fetched (by bbox, each cell once) after the camera stops. The heat layer fills only the areas that have open cases.
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { bi, biText, pair, LEVELS } from "./i18n.js";
import { $, el } from "./ui.js";
import { viewBbox } from "./viewer.js";

const LIMIT = 10000;
const STREET_MAX_M = 60000;
const GRID_MAX_M = 9000;
const KINDS = [
  { kind: "district", stroke: "#7fd1ff", width: 2.5, height: 3 },
  { kind: "street", stroke: "#5aa0c8", width: 1.5, height: 2.5, maxHeight: STREET_MAX_M },
  { kind: "grid_cell", stroke: "#4d6f86", width: 1, height: 2, maxHeight: GRID_MAX_M, byView: true },
];
/** Open cases → fill colour: pale yellow to deep red (ColorBrewer YlOrRd), translucent over the city. */
export const HEAT_RAMP = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"];
const RAMP = HEAT_RAMP.map((c) => Cesium.Color.fromCssColorString(c));
const HEAT_ALPHA = 0.55;

export class Areas {
  constructor(viewer) {
    this.viewer = viewer;
    this.layers = new Map(); // kind → {spec, checkbox, note, features: Map id → feature, primitive, complete, boxes}
    this.labels = viewer.scene.primitives.add(new Cesium.LabelCollection());
    this.heat = { on: false, level: "grid_cell", primitive: undefined, body: undefined };
    this.byCode = new Map(); // area code → feature (any level)
    viewer.camera.moveEnd.addEventListener(() => this.onCamera());
  }

  /** Build the switches for the area kinds the store holds (from /collections) and load the districts. */
  async load(collections) {
    const held = new Set(collections.map((c) => c.id));
    const kinds = KINDS.filter((k) => held.has(k.kind));
    if (!kinds.length) return false;
    $("areas-panel").hidden = false;
    for (const spec of kinds) this.addSwitch(spec);
    await Promise.all(kinds.filter((k) => !k.byView && !k.maxHeight).map((k) => this.fetch(k.kind)));
    this.onCamera();
    return true;
  }

  addSwitch(spec) {
    const [zh, en] = pair(LEVELS, spec.kind);
    const checkbox = el("input", { type: "checkbox", "data-area": spec.kind, checked: true });
    const note = el("span", { class: "hint" });
    $("area-switches").append(el("label", { class: "switch" }, checkbox, bi(`${zh}边界`, `${en} boundaries`), note));
    const layer = { spec, checkbox, note, features: new Map(), primitive: undefined, complete: false, boxes: [] };
    this.layers.set(spec.kind, layer);
    checkbox.addEventListener("change", () => this.onCamera());
  }

  /** Fetch a kind's areas (within bbox when given) into its cache; redraw when anything new came. */
  async fetch(kind, bbox) {
    const layer = this.layers.get(kind);
    if (!bbox && layer.pending) return layer.pending; // the whole kind is already on its way
    const done = this.fetchInto(layer, kind, bbox);
    if (!bbox) layer.pending = done.finally(() => (layer.pending = undefined));
    return done;
  }

  async fetchInto(layer, kind, bbox) {
    const params = { limit: LIMIT, properties: "name,props", bbox: bbox?.map((v) => v.toFixed(5)).join(",") };
    try {
      const body = await getJSON(`/collections/${kind}/items${query(params)}`);
      let added = 0;
      for (const f of body.features ?? []) {
        if (layer.features.has(f.id)) continue;
        layer.features.set(f.id, f);
        const code = f.properties?.code ?? String(f.id).replace(/^area:/, "");
        this.byCode.set(code, f);
        added += 1;
      }
      if (!bbox && (body.features?.length ?? 0) < LIMIT) layer.complete = true;
      if (bbox) layer.boxes.push(bbox);
      if (added) this.draw(kind);
      layer.note.replaceChildren();
      delete layer.note.dataset.zoom;
    } catch (err) {
      layer.note.replaceChildren(" ", bi("（加载失败）", "(failed to load)"));
      console.warn(`areas ${kind}: ${err.message}`);
    }
  }

  draw(kind) {
    const layer = this.layers.get(kind);
    if (layer.primitive) this.viewer.scene.primitives.remove(layer.primitive);
    layer.primitive = outlines([...layer.features.values()], layer.spec);
    if (layer.primitive) this.viewer.scene.primitives.add(layer.primitive);
    if (kind === "district") this.drawLabels();
    if (this.heat.on && this.heat.level === kind) this.drawHeat();
    this.onCamera(false);
  }

  drawLabels() {
    this.labels.removeAll();
    for (const f of this.layers.get("district").features.values()) {
      const centre = labelPoint(f.geometry);
      if (!centre) continue;
      const p = f.properties ?? {};
      this.labels.add({
        position: Cesium.Cartesian3.fromDegrees(centre[0], centre[1], 30),
        text: biText(p.name, p.name_en).replace(" ", "\n"),
        font: '600 17px "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif',
        fillColor: Cesium.Color.fromCssColorString("#d7f0ff"),
        outlineColor: Cesium.Color.fromCssColorString("#0e1116"),
        outlineWidth: 4,
        style: Cesium.LabelStyle.FILL_AND_OUTLINE,
        horizontalOrigin: Cesium.HorizontalOrigin.CENTER,
        verticalOrigin: Cesium.VerticalOrigin.CENTER,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
        // District names read from the whole city down to a district; closer in, the buildings speak.
        distanceDisplayCondition: new Cesium.DistanceDisplayCondition(2500, 4e6),
        scaleByDistance: new Cesium.NearFarScalar(5000, 1.1, 150000, 0.7),
        id: { cimArea: p.code ?? f.id },
      });
    }
  }

  relabel() {
    if (this.layers.has("district")) this.drawLabels();
    this.viewer.scene.requestRender();
  }

  /** Show each kind's outlines as its switch and the camera height allow; fetch what the view now needs. */
  onCamera(fetch = true) {
    const height = this.viewer.camera.positionCartographic.height;
    for (const [kind, layer] of this.layers) {
      const { spec, checkbox } = layer;
      const near = !spec.maxHeight || height < spec.maxHeight;
      const show = checkbox.checked && near;
      if (layer.primitive) layer.primitive.show = show;
      if (kind === "district") this.labels.show = show;
      const zoomIn = checkbox.checked && !near;
      if (zoomIn && !layer.note.dataset.zoom) layer.note.replaceChildren(" ", bi("（放大显示）", "(zoom in)"));
      else if (!zoomIn && layer.note.dataset.zoom) layer.note.replaceChildren();
      if (zoomIn) layer.note.dataset.zoom = "1";
      else delete layer.note.dataset.zoom;
      if (fetch && show && !layer.complete && !layer.pending) {
        const bbox = spec.byView ? viewBbox(this.viewer) : undefined;
        if (!spec.byView) this.fetch(kind);
        else if (bbox && !layer.boxes.some((b) => contains(b, bbox))) this.fetch(kind, pad(bbox, 0.15));
      }
    }
    this.viewer.scene.requestRender();
  }

  /** Switch the heat layer on or off, at `level` (grid_cell, street or district); its figures are refetched. */
  async setHeat(on, level = this.heat.level) {
    this.heat.on = on;
    this.heat.level = level;
    if (!on) {
      this.removeHeat();
      renderLegend(undefined);
      return;
    }
    await this.refreshHeat();
  }

  async refreshHeat() {
    if (!this.heat.on) return;
    const { level } = this.heat;
    const layer = this.layers.get(level);
    try {
      const [body] = await Promise.all([
        getJSON(`/cases/heat${query({ level })}`),
        layer && !layer.complete ? this.fetch(level) : undefined, // every area of the level, not only those in view
      ]);
      if (!this.heat.on || this.heat.level !== level) return;
      this.heat.body = body;
      this.drawHeat();
    } catch (err) {
      console.warn(`case heat: ${err.message}`);
    }
  }

  drawHeat() {
    this.removeHeat();
    const { body, level } = this.heat;
    const layer = this.layers.get(level);
    if (!body || !layer) return;
    const counts = body.counts ?? {};
    const max = Math.max(1, ...Object.values(counts));
    const instances = [];
    for (const f of layer.features.values()) {
      const code = f.properties?.code ?? String(f.id).replace(/^area:/, "");
      const count = counts[code] ?? 0;
      if (!count) continue;
      const color = Cesium.ColorGeometryInstanceAttribute.fromColor(heatColour(count, max));
      for (const polygon of polygonsOf(f.geometry)) {
        const [outer, ...holes] = polygon.map((ring) => ring.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat)));
        if (!outer || outer.length < 3) continue;
        instances.push(new Cesium.GeometryInstance({
          geometry: new Cesium.PolygonGeometry({
            polygonHierarchy: new Cesium.PolygonHierarchy(outer, holes.map((h) => new Cesium.PolygonHierarchy(h))),
            vertexFormat: Cesium.PerInstanceColorAppearance.FLAT_VERTEX_FORMAT,
          }),
          attributes: { color },
          id: { cimArea: code, name: f.properties?.name, count, overdue: body.overdue?.[code] ?? 0 },
        }));
      }
    }
    this.heat.filled = [...new Set(instances.map((i) => i.id.cimArea))]; // the areas drawn (the primitive lets go)
    renderLegend({ level, max, total: Object.values(counts).reduce((a, b) => a + b, 0), areas: instances.length });
    if (!instances.length) return;
    // Draped on the ground (a classification of the globe, under the buildings): a flat polygon a metre up fought
    // the globe's depth at city scale and showed as saw-teeth. The heat layer is one primitive, drawn only when on.
    this.heat.primitive = this.viewer.scene.primitives.add(new Cesium.GroundPrimitive({
      geometryInstances: instances,
      appearance: new Cesium.PerInstanceColorAppearance({ flat: true, translucent: true }),
      classificationType: Cesium.ClassificationType.TERRAIN,
      asynchronous: true,
    }));
    this.viewer.scene.requestRender();
  }

  removeHeat() {
    if (this.heat.primitive) this.viewer.scene.primitives.remove(this.heat.primitive);
    this.heat.primitive = undefined;
    this.viewer.scene.requestRender();
  }

  /** The area feature of a code (any level), when loaded. */
  area(code) {
    return this.byCode.get(code);
  }
}

function heatColour(count, max) {
  // Square-root scale: a few busy cells must not wash every other one out to the palest colour.
  const t = Math.sqrt(count / max);
  const index = Math.min(RAMP.length - 1, Math.floor(t * RAMP.length));
  return RAMP[index].withAlpha(HEAT_ALPHA);
}

function renderLegend(info) {
  const node = $("heat-legend");
  if (!node) return;
  if (!info) {
    node.replaceChildren();
    return;
  }
  const [zh, en] = pair(LEVELS, info.level);
  const swatches = RAMP.map((c) => el("span", { class: "swatch", style: `background:${c.toCssColorString()}` }));
  node.replaceChildren(
    el("div", { class: "ramp" }, "1 ", ...swatches, ` ${info.max}`),
    el("div", { class: "hint", id: "heat-summary" },
      bi(`${info.total} 件未结案，分布在 ${info.areas} 个${zh}`, `${info.total} open cases in ${info.areas} ${en}s`)),
  );
}

function polygonsOf(geometry) {
  if (geometry?.type === "Polygon") return [geometry.coordinates];
  if (geometry?.type === "MultiPolygon") return geometry.coordinates;
  return [];
}

function outlines(features, spec) {
  const color = Cesium.ColorGeometryInstanceAttribute.fromColor(Cesium.Color.fromCssColorString(spec.stroke));
  const instances = [];
  for (const feature of features) {
    for (const polygon of polygonsOf(feature.geometry)) {
      for (const ring of polygon) {
        if (ring.length < 3) continue;
        instances.push(new Cesium.GeometryInstance({
          geometry: new Cesium.PolylineGeometry({
            positions: ring.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, spec.height)),
            width: spec.width,
            arcType: Cesium.ArcType.NONE,
            vertexFormat: Cesium.PolylineColorAppearance.VERTEX_FORMAT,
          }),
          attributes: { color, depthFailColor: color },
        }));
      }
    }
  }
  if (!instances.length) return undefined;
  // Where the globe's depth hides a stretch of line (long segments at city scale), it is drawn all the same.
  return new Cesium.Primitive({
    geometryInstances: instances,
    appearance: new Cesium.PolylineColorAppearance({ translucent: false }),
    depthFailAppearance: new Cesium.PolylineColorAppearance({ translucent: false }),
    asynchronous: true,
  });
}

/** Where a district's name goes: the centroid of its largest ring (by the shoelace formula), else its box centre. */
function labelPoint(geometry) {
  let best;
  let bestArea = 0;
  for (const polygon of polygonsOf(geometry)) {
    const ring = polygon[0];
    let a = 0;
    let cx = 0;
    let cy = 0;
    for (let i = 0; i < ring.length - 1; i++) {
      const [x0, y0] = ring[i];
      const [x1, y1] = ring[i + 1];
      const cross = x0 * y1 - x1 * y0;
      a += cross;
      cx += (x0 + x1) * cross;
      cy += (y0 + y1) * cross;
    }
    if (Math.abs(a) > bestArea) {
      bestArea = Math.abs(a);
      best = [cx / (3 * a), cy / (3 * a)];
    }
  }
  return best;
}

function contains(outer, inner) {
  return outer[0] <= inner[0] && outer[1] <= inner[1] && outer[2] >= inner[2] && outer[3] >= inner[3];
}

function pad([w, s, e, n], share) {
  const dx = (e - w) * share;
  const dy = (n - s) * share;
  return [w - dx, s - dy, e + dx, n + dy];
}
