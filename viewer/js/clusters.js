// Sensors grouped by where they fall on the screen: a grid of CELL_PX squares, recomputed when the camera stops
// (moveEnd) or a state changes. A square holding two or more sensors is drawn as one disc with the count on it, in the
// colour of its worst member (alert red > warning amber > ok green > no data grey); the others stay single markers.
//
// Why our own grid over CesiumJS's EntityCluster: measured orbiting the demo in headless Chromium (SwiftShader, two
// cores under a load of ~18), the frame rates were alike and within the noise — 398 sensors: 6.4/5.8 fps grid, 6.4/6.9
// EntityCluster; 3,980: 6.4/7.3 grid, 7.7/2.4 EntityCluster. The grid's cost is bounded and known: one projection of
// each position on moveEnd (2 ms for 398, 9 ms for 3,980), nothing per frame; EntityCluster re-clusters as the camera
// changes and wants every sensor as an Entity beside the markers the live colours already keep.
// A cluster is one billboard, its disc and count drawn on a canvas (kept by count and state): a point with a label on
// it does not work, as both are drawn at the near plane (over buildings) and the point hid the label.
import * as Cesium from "./cesium.js";

export const CELL_PX = 64;
/** Below this camera height (m) every sensor is its own marker: a street scene has room for them. */
export const NEAR_M = 350;
export const RANK = { none: 0, ok: 1, warning: 2, alert: 3 };

export class ScreenClusters {
  constructor(scene, colours) {
    this.scene = scene;
    this.colours = colours; // state → Cesium.Color
    this.discs = scene.primitives.add(new Cesium.BillboardCollection({ scene }));
    this.images = new Map(); // "state:count" → canvas
    this.list = []; // [{count, state, position, ids}] as drawn, for the legend and tests
  }

  clear() {
    this.discs.removeAll();
    this.list = [];
  }

  /** The disc of a cluster: its state's colour, a white ring, the count; larger for more members. */
  image(state, count) {
    const key = `${state}:${count}`;
    if (this.images.has(key)) return [key, this.images.get(key)];
    const size = Math.round(20 + 8 * Math.log10(count)); // 22 px for 2, 44 px for 1,000
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size + 4;
    const g = canvas.getContext("2d");
    g.beginPath();
    g.arc(size / 2 + 2, size / 2 + 2, size / 2, 0, 2 * Math.PI);
    g.fillStyle = this.colours[state].toCssColorString();
    g.fill();
    g.lineWidth = 2;
    g.strokeStyle = "#ffffff";
    g.stroke();
    g.fillStyle = state === "warning" || state === "ok" ? "#000000" : "#ffffff";
    g.font = `bold ${count >= 100 ? 11 : 13}px sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    g.fillText(String(count), size / 2 + 2, size / 2 + 3);
    this.images.set(key, canvas);
    return [key, canvas];
  }

  /**
   * Group `items` ({id, position: Cartesian3, state}) by screen cell and draw the groups of two or more. Returns the
   * ids drawn inside a cluster (their own markers are hidden by the caller).
   */
  update(items) {
    this.clear();
    const inCluster = new Set();
    if (this.scene.camera.positionCartographic.height < NEAR_M) return inCluster;
    const cells = new Map();
    const at = new Cesium.Cartesian2();
    for (const item of items) {
      const p = Cesium.SceneTransforms.worldToWindowCoordinates(this.scene, item.position, at);
      if (!p) continue; // behind the camera: left single (not drawn anyway)
      const key = `${Math.floor(p.x / CELL_PX)}:${Math.floor(p.y / CELL_PX)}`;
      const cell = cells.get(key);
      if (cell) cell.push(item);
      else cells.set(key, [item]);
    }
    for (const members of cells.values()) {
      if (members.length < 2) continue;
      let state = "none";
      const sum = new Cesium.Cartesian3();
      for (const m of members) {
        if (RANK[m.state] > RANK[state]) state = m.state;
        Cesium.Cartesian3.add(sum, m.position, sum);
        inCluster.add(m.id);
      }
      const position = Cesium.Cartesian3.divideByScalar(sum, members.length, sum);
      const ids = members.map((m) => m.id);
      const cluster = { count: members.length, state, position, ids };
      this.list.push(cluster);
      const [imageId, image] = this.image(state, members.length);
      this.discs.add({
        position,
        image,
        imageId,
        disableDepthTestDistance: Number.POSITIVE_INFINITY, // over the buildings, as the single markers
        id: { cimSensorCluster: cluster },
      });
    }
    // A new disc reaches the texture atlas asynchronously; the scene renders on request only, so ask again.
    if (this.list.length) for (const ms of [50, 250, 1000]) setTimeout(() => this.scene.requestRender(), ms);
    return inCluster;
  }
}
