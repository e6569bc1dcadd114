// The section tool: pick a point (on a building or on the ground) and the city is cut there by one clipping plane,
// vertical (facing the camera: what of the city's tiles is between the camera and the plane is cut away, so the
// building is seen opened; the globe and the ground layers stay whole, so the cut building still stands on the
// ground rather than at the edge of a void) or horizontal (everything above the plane is cut away: floor plans; below zero the ground is cut too and
// what is buried shows). A slider moves the plane; the off button restores every tileset and the globe.
//
// Each tileset and the globe get their own ClippingPlaneCollection (a collection has one owner), kept and disabled
// when the section is off. The planes are
// written in the east-north-up frame at the picked point: for the globe that frame is the collection's modelMatrix;
// a tileset's planes are relative to its own clipping origin, so its modelMatrix is inverse(origin) × ENU.
import * as Cesium from "./cesium.js";
import { bi } from "./i18n.js";
import { $, el } from "./ui.js";

const EDGE = Cesium.Color.fromCssColorString("#f0b429");

export class Section {
  constructor(viewer, inspector, layers) {
    this.viewer = viewer;
    this.inspector = inspector;
    this.layers = layers;
    this.on = false;
    this.picking = false;
    this.centre = undefined; // Cartesian3 of the picked point
    this.kind = "vertical";
    this.offset = 0; // metres: along the plane's normal (vertical) or above the picked ground (horizontal)
    this.collections = [];
    this.kindSelect = el("select", { id: "section-kind", "aria-label": "剖切方向 section direction",
      "data-aria-label-zh": "剖切方向", "data-aria-label-en": "section direction" },
      el("option", { value: "vertical", "data-zh": "竖直", "data-en": "vertical" }, "竖直 vertical"),
      el("option", { value: "horizontal", "data-zh": "水平", "data-en": "horizontal" }, "水平 horizontal"));
    this.slider = el("input", { id: "section-offset", type: "range", min: "-60", max: "60", step: "0.5", value: "0",
      "aria-label": "剖切位置 section position", "data-aria-label-zh": "剖切位置", "data-aria-label-en": "section position", disabled: true });
    this.readout = el("span", { id: "section-readout", class: "status" });
    this.pickButton = el("button", { type: "button", id: "section-pick", onclick: () => this.startPick() }, bi("剖切", "Section"));
    this.offButton = el("button", { type: "button", id: "section-off", onclick: () => this.off() }, bi("关闭剖切", "Section off"));
    $("section-tools").append(this.pickButton, this.kindSelect, this.offButton, this.slider, this.readout);
    this.kindSelect.addEventListener("change", () => {
      this.kind = this.kindSelect.value;
      if (this.on) this.apply(this.centre);
    });
    this.slider.addEventListener("input", () => this.move(Number(this.slider.value)));
    this.handler = new Cesium.ScreenSpaceEventHandler(viewer.scene.canvas);
    this.handler.setInputAction((click) => this.picking && this.pickAt(click.position), Cesium.ScreenSpaceEventType.LEFT_CLICK);
  }

  /** The next click on the map picks the section's point. */
  startPick() {
    this.picking = true;
    this.inspector.enabled = false;
    this.pickButton.classList.add("active");
    this.readout.replaceChildren(bi("点击建筑或地面", "click a building or the ground"));
  }

  pickAt(position) {
    const { scene } = this.viewer;
    const picked = scene.pick(position);
    let at;
    if ((picked instanceof Cesium.Cesium3DTileFeature || picked?.primitive instanceof Cesium.Cesium3DTileset) && scene.pickPositionSupported) {
      at = scene.pickPosition(position);
    }
    at ??= this.viewer.camera.pickEllipsoid(position, scene.globe.ellipsoid);
    if (!at) return;
    this.picking = false;
    this.inspector.enabled = true;
    this.apply(at);
  }

  /**
   * Cut at `centre` (a Cartesian3): the plane through it, of the current kind, `offset` metres moved. For a horizontal
   * cut through a point on a building the default offset keeps the plane at the picked height.
   */
  apply(centre, { kind = this.kind, offset } = {}) {
    this.kind = kind;
    this.kindSelect.value = kind;
    this.centre = centre;
    const carto = Cesium.Cartographic.fromCartesian(centre);
    // The frame's origin is on the ground under the point, so a horizontal offset reads as height above the ground.
    const ground = Cesium.Cartesian3.fromRadians(carto.longitude, carto.latitude, 0);
    this.enu = Cesium.Transforms.eastNorthUpToFixedFrame(ground);
    if (kind === "vertical") {
      // The plane faces the camera: its normal is the camera's heading, level.
      const h = this.viewer.camera.heading;
      this.normal = new Cesium.Cartesian3(Math.sin(h), Math.cos(h), 0);
      this.offset = offset ?? 0;
      Object.assign(this.slider, { min: "-80", max: "80" });
    } else {
      this.normal = new Cesium.Cartesian3(0, 0, -1); // keep what is below
      this.offset = offset ?? Math.round(carto.height * 2) / 2;
      Object.assign(this.slider, { min: "-40", max: "200" });
    }
    this.slider.disabled = false;
    this.slider.value = String(this.offset);
    for (const tileset of this.layers.tilesets()) {
      const collection = this.collectionOf(tileset);
      collection.modelMatrix = Cesium.Matrix4.multiply(
        Cesium.Matrix4.inverse(tileset.clippingPlanesOriginMatrix, new Cesium.Matrix4()),
        this.enu,
        new Cesium.Matrix4(),
      );
    }
    const globePlanes = this.collectionOf(this.viewer.scene.globe);
    globePlanes.modelMatrix = this.enu;
    for (const collection of this.collections) {
      const plane = collection.get(0);
      plane.normal = this.normal;
      plane.distance = this.distance();
      // The globe is cut only by a horizontal plane (below zero: to see what is buried); a vertical one keeps it.
      collection.enabled = collection !== globePlanes || kind === "horizontal";
    }
    this.on = true;
    this.pickButton.classList.remove("active");
    this.offButton.classList.add("active");
    this.showReadout();
    this.viewer.scene.requestRender();
    this.appliedAt = performance.now(); // tests read it
  }

  /** The plane's distance term: visible is where normal·p + distance ≥ 0 (p in the ENU frame). */
  distance() {
    return this.kind === "vertical" ? -this.offset : this.offset;
  }

  /** Move the plane to `offset` metres (the slider): only each plane's distance changes. */
  move(offset) {
    if (!this.on) return;
    this.offset = offset;
    for (const collection of this.collections) collection.get(0).distance = this.distance();
    this.showReadout();
    this.viewer.scene.requestRender();
  }

  showReadout() {
    const v = this.offset.toFixed(1);
    this.readout.replaceChildren(this.kind === "vertical" ? bi(`偏移 ${v} 米`, `offset ${v} m`) : bi(`高度 ${v} 米`, `height ${v} m`));
  }

  /**
   * The clipping planes of a tileset or of the globe, made on first use and kept: switched off, a collection is
   * disabled, not destroyed (taking the globe's away while its tiles still referred to it stopped the rendering).
   */
  collectionOf(owner) {
    if (!owner.clippingPlanes) {
      owner.clippingPlanes = new Cesium.ClippingPlaneCollection({
        planes: [new Cesium.ClippingPlane(new Cesium.Cartesian3(0, 0, -1), 0)],
        edgeWidth: 2,
        edgeColor: EDGE,
        enabled: false,
      });
    }
    if (!this.collections.includes(owner.clippingPlanes)) this.collections.push(owner.clippingPlanes);
    return owner.clippingPlanes;
  }

  clearPlanes() {
    for (const collection of this.collections) collection.enabled = false;
  }

  /** Remove the cut: every tileset and the globe whole again. */
  off() {
    this.clearPlanes();
    this.on = false;
    this.picking = false;
    this.inspector.enabled = true;
    this.slider.disabled = true;
    this.pickButton.classList.remove("active");
    this.offButton.classList.remove("active");
    this.readout.replaceChildren();
    this.viewer.scene.requestRender();
  }
}
