// Underground mode: the ground turns translucent and the camera may go below it, so buried pipes and chambers are
// seen in place. Off again, the camera is lifted back above ground.
import * as Cesium from "./cesium.js";
import { $ } from "./ui.js";

export class Underground {
  constructor(viewer, onChange) {
    this.viewer = viewer;
    this.onChange = onChange;
    this.on = false;
    $("underground-switch").addEventListener("change", (event) => this.set(event.target.checked));
  }

  set(on) {
    const { scene } = this.viewer;
    const globe = scene.globe;
    this.on = on;
    $("underground-switch").checked = on;
    globe.translucency.enabled = on;
    // More see-through close up, where pipes are looked at; nearly solid far away, where the city reads as a map.
    globe.translucency.frontFaceAlphaByDistance = on ? new Cesium.NearFarScalar(300, 0.25, 8000, 0.8) : undefined;
    globe.translucency.backFaceAlpha = on ? 0.3 : 1;
    globe.undergroundColor = on ? Cesium.Color.fromCssColorString("#0b0f14") : Cesium.Color.BLACK;
    scene.screenSpaceCameraController.enableCollisionDetection = !on;
    document.body.classList.toggle("underground", on);
    scene.requestRender();
    if (!on && this.viewer.camera.positionCartographic.height < 2) {
      const c = this.viewer.camera.positionCartographic;
      this.viewer.camera.setView({
        destination: Cesium.Cartesian3.fromRadians(c.longitude, c.latitude, 150),
        orientation: { heading: this.viewer.camera.heading, pitch: Cesium.Math.toRadians(-35), roll: 0 },
      });
    }
    this.onChange();
  }

  toggle() {
    this.set(!this.on);
  }
}
