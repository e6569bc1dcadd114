// Underground mode: the buildings and BIM are hidden, the ground translucent, and the camera flies (1 s) below
// ground to look at the buried pipes nearest the view's centre, coloured by network (styler.js). Off again, the
// camera flies back to where it was and the styles return. A picked pipe (or valve, chamber) gets a label at the pick
// point: network, diameter, depth and age, in zh-CN and English.
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { currentLang } from "./i18n.js";
import { NETWORKS, OTHER_NETWORK } from "./styler.js";
import { $ } from "./ui.js";

/** Layers hidden below ground (alpha 0: not drawn, not picked, their switches untouched). See-through (0.05–0.12)
 * was tried: hundreds of overlapping translucent buildings still veil the pipes, and they take the clicks meant for
 * them. */
const GHOST = { groups: new Set(["buildings", "bim"]), alpha: 0 };
const FLIGHT_S = 1;
/** Looked at from this far back and this deep: well below the deepest mains, looking up at them as at a ceiling. */
const BACK_M = 60;
const EYE_DEPTH_M = 28;
/** The nearest pipe is asked of the server; past this the camera goes to the view's centre instead. */
const ASK_MS = 400;

export class Underground {
  constructor(viewer, onChange, { styler } = {}) {
    this.viewer = viewer;
    this.onChange = onChange;
    this.styler = styler;
    this.on = false;
    this.saved = undefined; // the camera before entering, restored on leaving
    this.label = undefined; // the entity labelling the last picked pipe
    this.labelText = "";
    this.listeners = [];
    $("underground-switch").addEventListener("change", (event) => this.set(event.target.checked));
    const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    handler.setInputAction((click) => this.pick(click.position), Cesium.ScreenSpaceEventType.LEFT_CLICK);
  }

  /** Called with the mode after each switch (the legend listens). */
  onSwitch(fn) {
    this.listeners.push(fn);
  }

  set(on, { fly = true } = {}) {
    const { scene, camera } = this.viewer;
    const globe = scene.globe;
    const started = performance.now();
    const was = this.on;
    this.on = on;
    $("underground-switch").checked = on;
    globe.translucency.enabled = on;
    // More see-through close up, where pipes are looked at; nearly solid far away, where the city reads as a map.
    globe.translucency.frontFaceAlphaByDistance = on ? new Cesium.NearFarScalar(300, 0.25, 8000, 0.8) : undefined;
    globe.translucency.backFaceAlpha = on ? 0.3 : 1;
    globe.undergroundColor = on ? Cesium.Color.fromCssColorString("#0b0f14") : Cesium.Color.BLACK;
    scene.screenSpaceCameraController.enableCollisionDetection = !on;
    document.body.classList.toggle("underground", on);
    if (this.styler) {
      this.styler.ghost = on ? GHOST : undefined;
      this.styler.refresh();
    }
    const timings = window.cim?.timings;
    const drawn = scene.postRender.addEventListener(() => {
      drawn();
      if (timings) timings.undergroundAnswerMs = performance.now() - started;
    });
    scene.requestRender();
    if (on && !was && fly && camera.positionCartographic.height > 0) {
      this.saved = {
        destination: Cesium.Cartesian3.clone(camera.position),
        orientation: { heading: camera.heading, pitch: camera.pitch, roll: camera.roll },
      };
      this.descend(started);
    } else if (!on && was) {
      this.clearLabel();
      if (this.saved && fly) {
        camera.cancelFlight();
        camera.flyTo({ ...this.saved, duration: FLIGHT_S, complete: () => this.flown(started) });
      } else if (camera.positionCartographic.height < 2) {
        const c = camera.positionCartographic;
        camera.setView({
          destination: Cesium.Cartesian3.fromRadians(c.longitude, c.latitude, 150),
          orientation: { heading: camera.heading, pitch: Cesium.Math.toRadians(-35), roll: 0 },
        });
      }
      this.saved = undefined;
    }
    this.listeners.forEach((fn) => fn(on));
    this.onChange();
  }

  toggle() {
    this.set(!this.on);
  }

  /** Fly below the pipes nearest the view's centre, looking at them along the present heading. */
  async descend(started) {
    const { camera } = this.viewer;
    const centre = this.viewCentre();
    const heading = camera.heading;
    let target = { lon: centre.longitude, lat: centre.latitude, depth: 1.5 };
    const nearest = await Promise.race([
      this.nearestPipe(centre).catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, ASK_MS)),
    ]);
    if (!this.on) return; // switched off while asking
    if (nearest) target = nearest;
    const east = Math.sin(heading) * BACK_M;
    const north = Math.cos(heading) * BACK_M;
    const metresPerDegLat = 111320;
    const metresPerDegLon = metresPerDegLat * Math.cos(target.lat);
    const lon = Cesium.Math.toDegrees(target.lon) - east / metresPerDegLon;
    const lat = Cesium.Math.toDegrees(target.lat) - north / metresPerDegLat;
    const pitch = Math.atan2(EYE_DEPTH_M - target.depth, BACK_M);
    this.target = target;
    camera.flyTo({
      destination: Cesium.Cartesian3.fromDegrees(lon, lat, -EYE_DEPTH_M),
      orientation: { heading, pitch, roll: 0 },
      duration: FLIGHT_S,
      complete: () => this.flown(started),
    });
  }

  flown(started) {
    if (window.cim?.timings) window.cim.timings.undergroundFlightMs = performance.now() - started;
    this.viewer.scene.requestRender();
  }

  /** Where the view's centre meets the ground, else the point below the camera. */
  viewCentre() {
    const { scene, camera } = this.viewer;
    const canvas = scene.canvas;
    const hit = camera.pickEllipsoid(new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2));
    return hit ? Cesium.Cartographic.fromCartesian(hit) : camera.positionCartographic.clone();
  }

  /** The nearest point of a pipe within ~150 m of `centre` (radians), with the pipe's depth; undefined if none. */
  async nearestPipe(centre) {
    const lon = Cesium.Math.toDegrees(centre.longitude);
    const lat = Cesium.Math.toDegrees(centre.latitude);
    const d = 0.0015;
    const bbox = [lon - d, lat - d, lon + d, lat + d].map((v) => v.toFixed(6)).join(",");
    const data = await getJSON(`/collections/pipe/items${query({ bbox, limit: 200, properties: "depth_m,network" })}`);
    const kx = Math.cos(centre.latitude);
    let best;
    for (const f of data.features ?? []) {
      const lines = f.geometry?.type === "LineString" ? [f.geometry.coordinates] : f.geometry?.coordinates ?? [];
      for (const line of lines) {
        for (let i = 1; i < line.length; i++) {
          const p = closest([lon, lat], line[i - 1], line[i], kx);
          if (!best || p.dist < best.dist) best = { ...p, depth: f.properties?.depth_m ?? 1.5 };
        }
      }
    }
    if (!best) return undefined;
    return { lon: Cesium.Math.toRadians(best.x), lat: Cesium.Math.toRadians(best.y), depth: best.depth };
  }

  /** Label a picked pipe, valve or chamber at the pick point; a pick elsewhere removes the label. */
  pick(position) {
    const { scene } = this.viewer;
    const picked = scene.pick(position);
    const buried = picked instanceof Cesium.Cesium3DTileFeature && picked.tileset?.cimGroup === "underground";
    if (!buried) {
      this.clearLabel();
      return;
    }
    const where = scene.pickPositionSupported ? scene.pickPosition(position) : undefined;
    const ray = this.viewer.camera.getPickRay(position);
    const point = where ?? (ray && Cesium.Ray.getPoint(ray, 30));
    if (!point) return;
    this.showLabel(point, describe(picked));
  }

  showLabel(position, { zh, en }) {
    this.clearLabel();
    const lang = currentLang();
    const text = lang === "zh" ? zh : lang === "en" ? en : `${zh}\n${en}`;
    this.labelText = text;
    this.label = this.viewer.entities.add({
      position,
      point: { pixelSize: 8, color: Cesium.Color.WHITE, outlineColor: Cesium.Color.BLACK, outlineWidth: 1,
        disableDepthTestDistance: Number.POSITIVE_INFINITY },
      label: {
        text,
        font: '14px "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif',
        fillColor: Cesium.Color.WHITE,
        showBackground: true,
        backgroundColor: Cesium.Color.fromCssColorString("#12161ce6"),
        backgroundPadding: new Cesium.Cartesian2(8, 5),
        verticalOrigin: Cesium.VerticalOrigin.BOTTOM,
        pixelOffset: new Cesium.Cartesian2(0, -10),
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
      },
    });
    if (window.cim?.timings) window.cim.timings.labelAt = performance.now();
    this.viewer.scene.requestRender();
  }

  clearLabel() {
    if (this.label) this.viewer.entities.remove(this.label);
    this.label = undefined;
    this.labelText = "";
    this.viewer.scene.requestRender();
  }
}

/** A buried feature's label lines from its tile metadata: network, kind, diameter, depth, year laid and age. */
export function describe(feature) {
  const get = (name) => {
    const value = feature.getProperty(name);
    return value === undefined || value === null || value === "" || value === -1 || value === 0 ? undefined : value;
  };
  const network = get("network");
  const names = NETWORKS[network] ?? { ...OTHER_NETWORK, en: network ?? OTHER_NETWORK.en };
  const kind = get("kind");
  const [kindZh, kindEn] = kind === "pipe" || kind === undefined ? ["管", "pipe"] : [KINDS_ZH[kind] ?? kind, kind];
  const diameter = get("diameter_mm");
  const depth = get("depth_m");
  const year = get("install_year") ?? (String(get("install_date") ?? "").slice(0, 4) || undefined);
  const age = year ? new Date().getFullYear() - Number(year) : undefined;
  const zh = [`${names.zh}${kindZh}`];
  const en = [`${names.en} ${kindEn}`];
  if (diameter !== undefined) {
    zh.push(`管径 DN${Math.round(diameter)}`);
    en.push(`diameter ${Math.round(diameter)} mm`);
  }
  if (depth !== undefined) {
    zh.push(`埋深 ${Number(depth).toFixed(1)} 米`);
    en.push(`depth ${Number(depth).toFixed(1)} m`);
  }
  if (year !== undefined) {
    zh.push(`${year}年敷设 (${age}年)`);
    en.push(`laid ${year} (${age} years)`);
  }
  return { zh: zh.join(" · "), en: en.join(" · ") };
}

const KINDS_ZH = { node: "节点", valve: "阀门", chamber: "检查井", hydrant: "消火栓", sensor: "传感器" };

/** The point of segment a–b nearest p (lon/lat; x scaled by kx to make the metric locally even) and its distance. */
function closest(p, a, b, kx) {
  const ax = (a[0] - p[0]) * kx;
  const ay = a[1] - p[1];
  const bx = (b[0] - p[0]) * kx;
  const by = b[1] - p[1];
  const dx = bx - ax;
  const dy = by - ay;
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, -(ax * dx + ay * dy) / len)) : 0;
  const x = ax + t * dx;
  const y = ay + t * dy;
  return { x: p[0] + x / kx, y: p[1] + y, dist: Math.hypot(x, y) };
}
