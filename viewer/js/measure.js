// Measuring on the map: distance (a polyline, each leg and the total), area (a polygon) and height (two clicks: their
// vertical difference; one click on a building: its height above the ground below it). Points are taken on the 3D
// tiles where a click hits one (scene.pickPosition, the depth buffer's position) and on the ellipsoid otherwise.
// Esc or the clear button removes the drawing; while a tool is on, clicks do not open the inspector.
import * as Cesium from "./cesium.js";
import { biText, bi } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";

const COLOUR = Cesium.Color.fromCssColorString("#f0b429");
const MODES = {
  distance: ["距离", "Distance"],
  area: ["面积", "Area"],
  height: ["高度", "Height"],
};
const LIFT = 0.3; // metres: lines drawn a little above what was clicked, so the ground does not hide them

/** A length as text in the chosen language: "523.4 米" / "523.4 m", kilometres from 1 km. */
export function lengthText(metres) {
  return metres >= 1000
    ? `${formatNumber(metres / 1000, 3)} ${biText("千米", "km")}`
    : `${formatNumber(metres, 1)} ${biText("米", "m")}`;
}

/** An area as text: square metres below 1 km², square kilometres above. */
export function areaText(squareMetres) {
  return squareMetres >= 1e6
    ? `${formatNumber(squareMetres / 1e6, 4)} ${biText("平方千米", "km²")}`
    : `${formatNumber(squareMetres, 1)} ${biText("平方米", "m²")}`;
}

/**
 * The area of a polygon on the ellipsoid, in m². Method: every corner is put on the ellipsoid (its height dropped),
 * then projected into the local east-north-up tangent plane at the corners' centroid and the planar shoelace formula
 * is applied. For a polygon a few kilometres across the tangent plane departs from the ellipsoid by centimetres, an
 * error far below 0.01 %; it is the footprint area, as a map gives it.
 */
export function ellipsoidArea(positions, ellipsoid = Cesium.Ellipsoid.WGS84) {
  if (positions.length < 3) return 0;
  const onSurface = positions.map((p) => ellipsoid.scaleToGeodeticSurface(p, new Cesium.Cartesian3()));
  const centroid = ellipsoid.scaleToGeodeticSurface(
    Cesium.Cartesian3.multiplyByScalar(
      onSurface.reduce((sum, p) => Cesium.Cartesian3.add(sum, p, sum), new Cesium.Cartesian3()),
      1 / onSurface.length,
      new Cesium.Cartesian3(),
    ),
  );
  const toLocal = Cesium.Matrix4.inverseTransformation(
    Cesium.Transforms.eastNorthUpToFixedFrame(centroid, ellipsoid),
    new Cesium.Matrix4(),
  );
  const local = onSurface.map((p) => Cesium.Matrix4.multiplyByPoint(toLocal, p, new Cesium.Cartesian3()));
  let twice = 0;
  for (let i = 0; i < local.length; i++) {
    const a = local[i];
    const b = local[(i + 1) % local.length];
    twice += a.x * b.y - b.x * a.y;
  }
  return Math.abs(twice) / 2;
}

export class Measure {
  constructor(viewer, inspector) {
    this.viewer = viewer;
    this.inspector = inspector;
    this.mode = undefined;
    this.points = []; // Cartesian3, as clicked
    this.onTiles = []; // whether each point was on a tileset (a building) or the ground
    this.result = undefined; // {mode, total, legs, area, height}
    this.answeredAt = undefined; // performance.now() when the last click's result was shown (tests read it)
    this.graphics = viewer.scene.primitives.add(new Cesium.PrimitiveCollection());
    this.lines = this.graphics.add(new Cesium.PolylineCollection());
    this.dots = this.graphics.add(new Cesium.PointPrimitiveCollection());
    this.labels = this.graphics.add(new Cesium.LabelCollection());
    this.buttons = {};
    const tools = $("measure-tools");
    for (const [mode, [zh, en]] of Object.entries(MODES)) {
      this.buttons[mode] = el("button", { type: "button", "data-measure": mode, onclick: () => this.start(mode) }, bi(zh, en));
      tools.append(this.buttons[mode]);
    }
    tools.append(el("button", { type: "button", id: "measure-clear", onclick: () => this.stop() }, bi("清除", "Clear")));
    this.handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    this.handler.setInputAction((click) => this.mode && this.click(click.position), Cesium.ScreenSpaceEventType.LEFT_CLICK);
    window.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.target.closest?.("input, select, textarea")) this.stop();
    });
  }

  /**
   * Draw a dot, a line and a label once, a pixel large, and remove them: the first frame that draws each kind of
   * primitive compiles its shaders and fills the glyph atlas, the first pick compiles the pick shaders, seconds in software WebGL, and that first frame would
   * otherwise be the answer to someone's first click. Called once the city is shown.
   */
  warmUp() {
    const { scene } = this.viewer;
    const canvas = scene.canvas;
    const at = this.viewer.camera.pickEllipsoid(new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2));
    if (!at || this.points.length) return;
    const near = lift(at, 1);
    this.dots.add({ position: near, pixelSize: 1, color: COLOUR, disableDepthTestDistance: Infinity });
    this.lines.add({ positions: [at, near], width: 1, material: Cesium.Material.fromType("Color", { color: COLOUR }) });
    this.label(near, "0123456789.,米千平方总长段第高差离地 mk² total height above ground leg difference", 0.05);
    const remove = scene.postRender.addEventListener(() => {
      remove();
      // The first pick compiles the pick shaders of everything in view: done here too, not at the first click.
      setTimeout(() => {
        const centre = new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2);
        scene.pick(centre);
        if (scene.pickPositionSupported) scene.pickPosition(centre);
      }, 0);
      if (!this.points.length) this.draw();
      scene.requestRender();
    });
    scene.requestRender();
  }

  /** Turn tool `mode` on (distance, area, height), starting a new drawing; the same button again turns it off. */
  start(mode) {
    if (this.mode === mode && !this.points.length) return this.stop();
    this.clear();
    this.mode = mode;
    this.inspector.enabled = false;
    for (const [name, button] of Object.entries(this.buttons)) button.classList.toggle("active", name === mode);
    this.renderText();
    this.render();
  }

  /** Turn the tool off and remove its drawing. */
  stop() {
    this.clear();
    this.mode = undefined;
    this.inspector.enabled = true;
    for (const button of Object.values(this.buttons)) button.classList.remove("active");
    this.renderText();
    this.render();
  }

  clear() {
    this.points = [];
    this.onTiles = [];
    this.result = undefined;
    this.draw();
  }

  /** The world position under a screen position: on a 3D tile where there is one, else on the ellipsoid. */
  positionAt(position) {
    const { scene } = this.viewer;
    const picked = scene.pick(position);
    const onTile = picked instanceof Cesium.Cesium3DTileFeature || picked?.primitive instanceof Cesium.Cesium3DTileset;
    if (onTile && scene.pickPositionSupported) {
      const at = scene.pickPosition(position);
      if (at) return { at, onTile: true };
    }
    const at = this.viewer.camera.pickEllipsoid(position, scene.globe.ellipsoid);
    return at ? { at, onTile: false } : undefined;
  }

  click(position) {
    const t0 = performance.now();
    const found = this.positionAt(position);
    if (!found) return;
    if (this.mode === "height" && this.points.length >= 2) this.clear();
    this.points.push(found.at);
    this.onTiles.push(found.onTile);
    this.compute();
    this.draw();
    this.render();
    this.answeredAt = performance.now();
    this.workMs = this.answeredAt - t0; // picking and drawing, before the frame
  }

  compute() {
    const p = this.points;
    const carto = p.map((c) => Cesium.Cartographic.fromCartesian(c));
    if (this.mode === "distance") {
      // Each leg is the straight line between the clicked points (a roof to a roof counts the climb too).
      const legs = p.slice(1).map((b, i) => Cesium.Cartesian3.distance(p[i], b));
      this.result = { mode: "distance", legs, total: legs.reduce((a, b) => a + b, 0) };
    } else if (this.mode === "area") {
      this.result = { mode: "area", area: ellipsoidArea(p, this.viewer.scene.globe.ellipsoid), corners: p.length };
    } else if (this.mode === "height") {
      if (p.length === 1) {
        // One point: its height above the ground under it (the globe's surface there; the ellipsoid here).
        const ground = this.viewer.scene.globe.getHeight(carto[0]) ?? 0;
        this.result = { mode: "height", height: carto[0].height - ground, fromGround: true, ground };
      } else {
        this.result = { mode: "height", height: Math.abs(carto[1].height - carto[0].height), fromGround: false };
      }
    }
  }

  draw() {
    this.lines.removeAll();
    this.dots.removeAll();
    this.labels.removeAll();
    const lifted = this.points.map((p) => lift(p, LIFT));
    for (const p of lifted) this.dots.add({ position: p, pixelSize: 7, color: COLOUR, disableDepthTestDistance: Infinity });
    const r = this.result;
    if (!r) return this.renderText();
    const line = (positions) =>
      this.lines.add({ positions, width: 2.5, material: Cesium.Material.fromType("Color", { color: COLOUR }) });
    if (r.mode === "distance" && lifted.length > 1) {
      line(lifted);
      r.legs.forEach((leg, i) => this.label(midpoint(lifted[i], lifted[i + 1]), lengthText(leg), 0.85));
      this.label(lifted.at(-1), `${biText("总长", "total")} ${lengthText(r.total)}`, 1, -14);
    } else if (r.mode === "area" && lifted.length > 1) {
      line([...lifted, lifted[0]]);
      if (lifted.length > 2) {
        const centre = Cesium.BoundingSphere.fromPoints(lifted).center;
        this.label(centre, areaText(r.area), 1);
      }
    } else if (r.mode === "height") {
      const top = this.points.at(-1);
      const carto = Cesium.Cartographic.fromCartesian(top);
      const base = r.fromGround
        ? Cesium.Cartesian3.fromRadians(carto.longitude, carto.latitude, r.ground)
        : Cesium.Cartesian3.fromRadians(carto.longitude, carto.latitude, Cesium.Cartographic.fromCartesian(this.points[0]).height);
      line([lift(base, LIFT), lift(top, LIFT)]);
      if (!r.fromGround) line([lifted[0], lift(base, LIFT)]);
      this.label(midpoint(base, top), `${biText("高差", "height")} ${lengthText(r.height)}`, 1);
    }
    this.renderText();
  }

  label(position, text, scale = 1, offsetY = 0) {
    this.labels.add({
      position,
      text,
      // One font for every label (the glyph atlas is per font), sized by the label's scale.
      font: `15px ${getComputedStyle(document.body).getPropertyValue("--font") || "sans-serif"}`,
      scale,
      fillColor: Cesium.Color.WHITE,
      outlineColor: Cesium.Color.BLACK,
      outlineWidth: 3,
      style: Cesium.LabelStyle.FILL_AND_OUTLINE,
      showBackground: true,
      backgroundColor: Cesium.Color.fromCssColorString("#12161ccc"),
      pixelOffset: new Cesium.Cartesian2(0, offsetY),
      verticalOrigin: Cesium.VerticalOrigin.BOTTOM,
      disableDepthTestDistance: Infinity,
    });
  }

  /** The result in the side panel, both languages (the switch hides one). */
  renderText() {
    const out = $("measure-result");
    const r = this.result;
    const hints = {
      distance: ["点击地图或建筑添加点", "Click the map or buildings to add points"],
      area: ["点击至少三个点围成多边形", "Click three or more corners"],
      height: ["点击建筑测其离地高度，再点一处测高差", "Click a building for its height above ground, again for a difference"],
    };
    if (!this.mode) return out.replaceChildren();
    if (!r) return out.replaceChildren(el("p", { class: "hint" }, bi(...hints[this.mode])));
    const lines = [];
    const metres = (v) => [`${formatNumber(v, 1)} 米`, `${formatNumber(v, 1)} m`];
    if (r.mode === "distance") {
      r.legs.forEach((leg, i) => lines.push(el("li", { class: "leg" }, bi(`第${i + 1}段 ${metres(leg)[0]}`, `leg ${i + 1} ${metres(leg)[1]}`))));
      lines.push(el("li", { id: "measure-total", "data-value": r.total.toFixed(3) }, bi(`总长 ${metres(r.total)[0]}`, `total ${metres(r.total)[1]}`)));
    } else if (r.mode === "area") {
      const v = formatNumber(r.area, 1);
      lines.push(el("li", { id: "measure-area", "data-value": r.area.toFixed(3) },
        r.corners < 3 ? bi("至少三个点", "three corners at least") : bi(`面积 ${v} 平方米`, `area ${v} m²`)));
    } else if (r.mode === "height") {
      const [zh, en] = metres(r.height);
      lines.push(el("li", { id: "measure-height", "data-value": r.height.toFixed(3) },
        r.fromGround ? bi(`离地高度 ${zh}`, `height above ground ${en}`) : bi(`高差 ${zh}`, `height difference ${en}`)));
    }
    out.replaceChildren(el("ul", { class: "measures" }, lines));
  }

  render() {
    this.viewer.scene.requestRender();
  }
}

function lift(position, metres) {
  const normal = Cesium.Ellipsoid.WGS84.geodeticSurfaceNormal(position, new Cesium.Cartesian3());
  return Cesium.Cartesian3.add(position, Cesium.Cartesian3.multiplyByScalar(normal, metres, normal), new Cesium.Cartesian3());
}

function midpoint(a, b) {
  return Cesium.Cartesian3.midpoint(a, b, new Cesium.Cartesian3());
}
