// The city's ground layers from the OGC API – Features items (roads, parks, water …), drawn on the ellipsoid: the
// calm base that stands in for a world image. Each is a switch; a layer the store does not hold is left out.
//
// They are drawn as plain batched primitives a few decimetres above the ellipsoid, not as clamped ground primitives:
// on the flat ellipsoid that looks the same, and ground primitives cost several times more per frame in software
// WebGL (measured in headless Chromium: 285 → 133 ms a frame for 700 roads and 36 parks).
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { bi } from "./i18n.js";
import { $, el } from "./ui.js";

const GROUND = [
  { kind: "water", label: ["水系", "Water"], fill: "#1d4a6e", height: 0.2 },
  { kind: "park", label: ["公园绿地", "Parks"], fill: "#2e5e3b", height: 0.3 },
  { kind: "land_use", label: ["用地", "Land use"], fill: "#30353c", height: 0.1, off: true },
  { kind: "road", label: ["道路", "Roads"], stroke: "#5d6876", width: 2, height: 0.5 },
  { kind: "railway", label: ["铁路", "Railways"], stroke: "#8a7f70", width: 1.5, height: 0.6 },
];
const GRANULARITY = Cesium.Math.RADIANS_PER_DEGREE / 100; // ~1.1 km: a chord sags 2–3 cm, below the layers' lift
const LIMIT = 10000; // the server's page cap; a larger city is drawn in the part first looked at

export class Ground {
  constructor(viewer) {
    this.viewer = viewer;
    this.primitives = new Map();
  }

  /**
   * Load the ground layers that `collections` (from /collections) holds, within `bbox` when given. Their switches
   * appear at once; their features are fetched and drawn once `after` settles (the viewer passes the first frame
   * with tiles: in software WebGL the ground's geometry and shaders would otherwise delay the city's first frame).
   */
  async load(collections, bbox, after = Promise.resolve()) {
    const held = new Set(collections.map((c) => c.id));
    await Promise.all(GROUND.filter((g) => held.has(g.kind)).map((g) => this.loadOne(g, bbox, after)));
  }

  async loadOne(layer, bbox, after) {
    const checkbox = el("input", { type: "checkbox", "data-ground": layer.kind, checked: !layer.off });
    const note = el("span", { class: "note" });
    $("ground-switches").append(el("label", { class: "switch" }, checkbox, bi(...layer.label), note));
    await after.catch(() => undefined);
    try {
      const params = { limit: LIMIT, bbox: bbox?.map((v) => v.toFixed(6)).join(","), properties: "name" };
      const data = await getJSON(`/collections/${layer.kind}/items${query(params)}`);
      const primitive = layer.stroke ? lines(data.features, layer) : areas(data.features, layer);
      if (!primitive) return;
      primitive.show = checkbox.checked;
      checkbox.addEventListener("change", () => {
        primitive.show = checkbox.checked;
        this.viewer.scene.requestRender();
      });
      this.viewer.scene.primitives.add(primitive);
      this.viewer.scene.requestRender();
      this.primitives.set(layer.kind, primitive);
    } catch (err) {
      note.replaceChildren(" ", bi("（加载失败）", "(failed to load)"));
      console.warn(`ground layer ${layer.kind}: ${err.message ?? err}`);
    }
  }
}

function parts(geometry, single, multi) {
  if (geometry?.type === single) return [geometry.coordinates];
  if (geometry?.type === multi) return geometry.coordinates;
  return [];
}

function lines(features, layer) {
  const color = Cesium.ColorGeometryInstanceAttribute.fromColor(Cesium.Color.fromCssColorString(layer.stroke));
  const instances = [];
  for (const feature of features) {
    for (const line of parts(feature.geometry, "LineString", "MultiLineString")) {
      if (line.length < 2) continue;
      instances.push(new Cesium.GeometryInstance({
        geometry: new Cesium.PolylineGeometry({
          positions: line.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, layer.height)),
          width: layer.width,
          arcType: Cesium.ArcType.NONE,
          vertexFormat: Cesium.PolylineColorAppearance.VERTEX_FORMAT,
        }),
        attributes: { color },
      }));
    }
  }
  if (!instances.length) return undefined;
  return new Cesium.Primitive({
    geometryInstances: instances,
    appearance: new Cesium.PolylineColorAppearance({ translucent: false }),
  });
}

function areas(features, layer) {
  const color = Cesium.ColorGeometryInstanceAttribute.fromColor(Cesium.Color.fromCssColorString(layer.fill));
  const instances = [];
  for (const feature of features) {
    for (const polygon of parts(feature.geometry, "Polygon", "MultiPolygon")) {
      const [outer, ...holes] = polygon.map((ring) => ring.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat)));
      if (!outer || outer.length < 3) continue;
      instances.push(new Cesium.GeometryInstance({
        geometry: new Cesium.PolygonGeometry({
          polygonHierarchy: new Cesium.PolygonHierarchy(outer, holes.map((h) => new Cesium.PolygonHierarchy(h))),
          height: layer.height,
          // Subdivided every ~1 km (the default is 1°, ~110 km): a flat triangle sags below the curved globe by
          // d²/8R — 2 m for a 10 km span of the river or the sea — and the globe showed through as dark holes.
          granularity: GRANULARITY,
          vertexFormat: Cesium.PerInstanceColorAppearance.FLAT_VERTEX_FORMAT,
        }),
        attributes: { color },
      }));
    }
  }
  if (!instances.length) return undefined;
  return new Cesium.Primitive({
    geometryInstances: instances,
    appearance: new Cesium.PerInstanceColorAppearance({ flat: true, translucent: false }),
  });
}
