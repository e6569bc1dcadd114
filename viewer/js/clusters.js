// Sensors grouped by where they fall on the screen: a grid of CELL_PX squares, recomputed when the camera stops
// (moveEnd) or a state changes. A square holding two or more sensors is drawn as one disc with the count on it, in the
// colour of its worst member (alert red > warning amber > ok green > no data grey); the others stay single markers.
//
// Why our own grid over CesiumJS's EntityCluster: EntityCluster needs every sensor as an Entity (a DataSource the
// display updates each frame) and re-clusters while the camera moves, rebuilding its billboards and labels on the way;
// in software WebGL that cost falls on every frame of an orbit. Here the work is one projection of each position on
// moveEnd (a few ms for thousands) and the frame draws only the collections' points and a few hundred labels.
import * as Cesium from "./cesium.js";

export const CELL_PX = 64;
/** Below this camera height (m) every sensor is its own marker: a street scene has room for them. */
export const NEAR_M = 350;
export const RANK = { none: 0, ok: 1, warning: 2, alert: 3 };

export class ScreenClusters {
  constructor(scene, colours) {
    this.scene = scene;
    this.colours = colours; // state → Cesium.Color
    this.points = scene.primitives.add(new Cesium.PointPrimitiveCollection());
    this.labels = scene.primitives.add(new Cesium.LabelCollection());
    this.list = []; // [{count, state, position, ids}] as drawn, for the legend and tests
  }

  clear() {
    this.points.removeAll();
    this.labels.removeAll();
    this.list = [];
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
      this.points.add({
        position,
        // Larger for more members, within reason: 20 px for 2, 34 px for 1,000.
        pixelSize: 16 + 6 * Math.log10(members.length),
        color: this.colours[state],
        outlineColor: Cesium.Color.WHITE,
        outlineWidth: 2,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
        id: { cimSensorCluster: cluster },
      });
      this.labels.add({
        position,
        text: String(members.length),
        font: "bold 13px sans-serif",
        fillColor: state === "warning" || state === "ok" ? Cesium.Color.BLACK : Cesium.Color.WHITE,
        horizontalOrigin: Cesium.HorizontalOrigin.CENTER,
        verticalOrigin: Cesium.VerticalOrigin.CENTER,
        disableDepthTestDistance: Number.POSITIVE_INFINITY,
        id: { cimSensorCluster: cluster },
      });
    }
    return inCluster;
  }
}
