// The Cesium viewer, offline: no Cesium ion, no imagery, no terrain service, no geocoder. The globe is a plain
// ellipsoid in a calm colour; the city's own ground layers (ground.js) are drawn on it.
import * as Cesium from "./cesium.js";

export function createViewer(container) {
  const viewer = new Cesium.Viewer(container, {
    baseLayer: false, // no imagery at all: the default would be Bing Maps through Cesium ion
    baseLayerPicker: false,
    geocoder: false,
    homeButton: false,
    sceneModePicker: false,
    navigationHelpButton: false,
    animation: false,
    timeline: false,
    fullscreenButton: false,
    infoBox: false,
    selectionIndicator: false,
    scene3DOnly: true,
    terrainProvider: new Cesium.EllipsoidTerrainProvider(),
    skyBox: false,
    msaaSamples: 1,
    // Render only when something changed (camera, tiles, styles): in software WebGL a frame costs 100+ ms, and an
    // idle wall screen should not burn both cores. Whoever changes the scene calls scene.requestRender().
    requestRenderMode: true,
    maximumRenderTimeChange: Number.POSITIVE_INFINITY,
  });
  const { scene } = viewer;
  scene.backgroundColor = Cesium.Color.fromCssColorString("#0e1116");
  scene.globe.baseColor = Cesium.Color.fromCssColorString("#262c33");
  scene.globe.showGroundAtmosphere = false;
  scene.globe.enableLighting = false;
  scene.skyAtmosphere.show = false;
  scene.fog.enabled = false;
  // A light from above the camera and a little from its left, so the city reads the same at any hour. The default
  // light is the sun at the clock's time (now): at dusk in Shanghai the buildings turned dark and the highlights of
  // a query dim. Intensity 2 as CesiumJS gives its sun.
  scene.light = new Cesium.DirectionalLight({ direction: new Cesium.Cartesian3(0, 0, -1), intensity: 2.0 });
  const scratch = { down: new Cesium.Cartesian3(), side: new Cesium.Cartesian3() };
  scene.preRender.addEventListener(() => {
    const down = Cesium.Cartesian3.negate(
      scene.globe.ellipsoid.geodeticSurfaceNormal(scene.camera.positionWC, scratch.down),
      scratch.down,
    );
    const side = Cesium.Cartesian3.multiplyByScalar(scene.camera.rightWC, 0.6, scratch.side);
    Cesium.Cartesian3.normalize(Cesium.Cartesian3.add(down, side, down), scene.light.direction);
  });
  // Buried pipes lie below the ellipsoid: hide them behind the ground until underground mode is switched on.
  scene.globe.depthTestAgainstTerrain = true;
  scene.postProcessStages.fxaa.enabled = !isSoftware(scene);
  if (isSoftware(scene)) {
    // Software WebGL (SwiftShader, llvmpipe: headless browsers, machines without a GPU): a frame at full resolution
    // with antialiasing takes seconds; at 0.6 scale without FXAA the city still reads and stays interactive.
    viewer.resolutionScale = STILL_SCALE;
    lowerResolutionWhileMoving(viewer);
    // The globe is one flat colour (no imagery): coarser globe tiles look the same and cost fewer vertices
    // (bench/viewer_bench.py, 2,000 buildings, quiet machine: orbit 12.2 → 13.2 fps, wall 11.6 → 12.6 fps).
    scene.globe.maximumScreenSpaceError = 8;
  }
  return viewer;
}

/** Software WebGL's drawing-buffer scale when the camera is still, and while it moves. A frame's cost there follows
 * the pixel count, not the scene: measured in headless Chromium at 1600×900, an empty scene (no tiles, no globe)
 * orbited no faster than the city, and scale 0.45 about doubled the frame rate of 0.6. So the view is drawn coarser
 * only while it moves, and sharp again half a second after it stops (CesiumJS's moveEnd): a still city, and every
 * screenshot, looks as before. Moving scale 0.4 → 0.3: orbit 13.2 → 15.2 fps at 1600×900 (the target is 15;
 * bench/viewer_bench.py, medians of 2 runs, quiet machine); motion is coarser, a still view unchanged. */
const STILL_SCALE = 0.6;
const MOVING_SCALE = 0.3;

function lowerResolutionWhileMoving(viewer) {
  const { camera } = viewer.scene;
  // Only our own scale is switched: another mode's (the wall's) is left alone.
  camera.moveStart.addEventListener(() => {
    if (viewer.resolutionScale === STILL_SCALE) viewer.resolutionScale = MOVING_SCALE;
  });
  camera.moveEnd.addEventListener(() => {
    if (viewer.resolutionScale !== MOVING_SCALE) return;
    viewer.resolutionScale = STILL_SCALE;
    viewer.scene.requestRender();
  });
}

/** Whether WebGL runs in software, where every pixel counts. */
export function isSoftware(scene) {
  const gl = scene.context._gl; // the context's WebGL handle: CesiumJS exposes no public renderer name
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
  return /swiftshader|llvmpipe|software/i.test(name);
}

const toRadians = Cesium.Math.toRadians;
const toDegrees = Cesium.Math.toDegrees;

/** The camera as {lon, lat, height, heading, pitch} in degrees and metres. */
export function cameraState(viewer) {
  const c = viewer.camera;
  const carto = c.positionCartographic;
  return {
    lon: toDegrees(carto.longitude),
    lat: toDegrees(carto.latitude),
    height: carto.height,
    heading: toDegrees(c.heading),
    pitch: toDegrees(c.pitch),
  };
}

export function setCamera(viewer, { lon, lat, height, heading = 0, pitch = -45 }, duration = 0) {
  const destination = Cesium.Cartesian3.fromDegrees(lon, lat, height);
  const orientation = { heading: toRadians(heading), pitch: toRadians(pitch), roll: 0 };
  if (duration > 0) {
    return new Promise((resolve) => {
      viewer.camera.flyTo({ destination, orientation, duration, complete: resolve, cancel: resolve });
    });
  }
  viewer.camera.setView({ destination, orientation });
  return Promise.resolve();
}

/** Fly to look at a place (lon/lat, ground level) from `range` metres away, obliquely. */
export function flyToPoint(viewer, lon, lat, { range = 900, height = 0, pitch = -40, heading = 0, duration = 2 } = {}) {
  const centre = Cesium.Cartesian3.fromDegrees(lon, lat, height);
  const sphere = new Cesium.BoundingSphere(centre, 30);
  return new Promise((resolve) => {
    viewer.camera.flyToBoundingSphere(sphere, {
      offset: new Cesium.HeadingPitchRange(toRadians(heading), toRadians(pitch), range),
      duration,
      complete: resolve,
      cancel: resolve,
    });
  });
}

/** Every [lon, lat] position of a GeoJSON geometry. */
export function positionsOf(geometry) {
  const out = [];
  const walk = (c) => {
    if (typeof c[0] === "number") out.push(c);
    else for (const part of c) walk(part);
  };
  if (geometry?.type === "GeometryCollection") for (const g of geometry.geometries) out.push(...positionsOf(g));
  else if (geometry?.coordinates) walk(geometry.coordinates);
  return out;
}

/** Fly to show a GeoJSON geometry whole. */
export function flyToGeometry(viewer, geometry, duration = 2) {
  const points = positionsOf(geometry);
  if (!points.length) return Promise.resolve();
  const cartesians = points.map(([lon, lat]) => Cesium.Cartesian3.fromDegrees(lon, lat, 0));
  const sphere = Cesium.BoundingSphere.fromPoints(cartesians);
  const range = Math.max(350, sphere.radius * 3);
  const centre = Cesium.Cartographic.fromCartesian(sphere.center);
  return flyToPoint(viewer, toDegrees(centre.longitude), toDegrees(centre.latitude), { range, duration });
}

/** The lon/lat rectangle the camera sees, as [west, south, east, north], or undefined when looking at the sky. */
export function viewBbox(viewer) {
  const rect = viewer.camera.computeViewRectangle(viewer.scene.globe.ellipsoid);
  if (!rect) return undefined;
  return [rect.west, rect.south, rect.east, rect.north].map((v) => toDegrees(v));
}

/** The lon/lat on the ellipsoid under a screen position, or undefined. */
export function groundAt(viewer, position) {
  const cartesian = viewer.camera.pickEllipsoid(position, viewer.scene.globe.ellipsoid);
  if (!cartesian) return undefined;
  const carto = Cesium.Cartographic.fromCartesian(cartesian);
  return [toDegrees(carto.longitude), toDegrees(carto.latitude)];
}
