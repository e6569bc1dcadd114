// Drawing a polygon on the ground: click to add corners, double-click (or Enter) to finish, Esc to cancel.
import * as Cesium from "./cesium.js";
import { groundAt } from "./viewer.js";

export function drawPolygon(viewer) {
  return new Promise((resolve) => {
    const points = [];
    const handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    const shape = viewer.entities.add({
      polygon: {
        hierarchy: new Cesium.CallbackProperty(
          () => new Cesium.PolygonHierarchy(points.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat))),
          false,
        ),
        material: Cesium.Color.fromCssColorString("#46b1e1").withAlpha(0.25),
        classificationType: Cesium.ClassificationType.TERRAIN,
      },
      polyline: {
        positions: new Cesium.CallbackProperty(
          () => [...points, points[0]].filter(Boolean).map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat)),
          false,
        ),
        clampToGround: true,
        width: 2,
        material: Cesium.Color.fromCssColorString("#46b1e1"),
      },
    });
    const finish = (ok) => {
      handler.destroy();
      window.removeEventListener("keydown", onKey);
      viewer.entities.remove(shape);
      resolve(ok && points.length >= 3 ? points.slice() : undefined);
    };
    const onKey = (event) => {
      if (event.key === "Escape") finish(false);
      if (event.key === "Enter") finish(true);
    };
    window.addEventListener("keydown", onKey);
    handler.setInputAction((click) => {
      const at = groundAt(viewer, click.position);
      if (at) points.push(at);
      viewer.scene.requestRender();
    }, Cesium.ScreenSpaceEventType.LEFT_CLICK);
    handler.setInputAction(() => {
      // The double-click's second click already added a corner at the same spot; drop it.
      if (points.length > 3) points.pop();
      finish(true);
    }, Cesium.ScreenSpaceEventType.LEFT_DOUBLE_CLICK);
  });
}

/** A closed GeoJSON Polygon from a ring of [lon, lat]. */
export function polygonOf(ring) {
  return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
}
