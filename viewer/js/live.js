// Live sensor state over the server's WebSocket (/iot/live): a snapshot, then coalesced updates. Sensor markers and
// the assets they watch change colour with state. The sensor layer is a switch, off by default (thousands of dots hide
// the city); on, the sensors are clustered by zoom (clusters.js). A sensor in alert is drawn even with the layer off:
// a command centre must see where something is wrong without looking for a switch, and the alert's toast and list
// entry fly to it; open alerts fill the alert list, new ones also pop up as a toast;
// the changes of cases the messages carry go to onCases.
// The socket reconnects with back-off when the server goes away.
import * as Cesium from "./cesium.js";
import { getJSON, query } from "./api.js";
import { ScreenClusters } from "./clusters.js";
import { ALERT_SEVERITIES, alertText, bi, biText, pair, shanghaiTime } from "./i18n.js";
import { $, el, toast } from "./ui.js";
import { flyToPoint } from "./viewer.js";

/** Sensor states: colour and name, worst first (the legend lists them in this order). */
export const SENSOR_STATES = {
  alert: { css: "#e5484d", zh: "告警", en: "alert" },
  warning: { css: "#f0b429", zh: "预警", en: "warning" },
  ok: { css: "#3fb950", zh: "正常", en: "ok" },
  none: { css: "#8d97a5", zh: "无数据", en: "no reading" },
};
const COLOURS = Object.fromEntries(Object.entries(SENSOR_STATES).map(([k, v]) => [k, Cesium.Color.fromCssColorString(v.css)]));
const RECLUSTER_MS = 250; // state changes come in bursts: one regrouping after them
// Sensor statuses that mean something is wrong even without a threshold rule.
const BAD = new Set(["fault", "alarm", "error", "critical", "failed", "leak", "flood"]);
const WARN = new Set(["maintenance", "warning", "degraded", "stale"]);

export class Live {
  constructor({ viewer, styler, inspector, endpoints, onAlerts, onCases }) {
    Object.assign(this, { viewer, styler, inspector, endpoints, onAlerts, onCases });
    this.sensors = new Map(); // id → {id, parent, lon, lat, marker}
    this.states = new Map(); // sensor id → reading
    this.alerts = new Map(); // alert id → alert (open ones)
    this.alerting = new Set(); // ids of the sensors an open alert names
    this.markers = viewer.scene.primitives.add(new Cesium.PointPrimitiveCollection());
    this.clusters = new ScreenClusters(viewer.scene, COLOURS);
    this.inCluster = new Set(); // sensor ids drawn inside a cluster
    this.shown = false; // the sensor layer's switch
    this.retry = 1;
    this.socket = undefined;
    this.switch = el("input", { type: "checkbox", id: "sensors-switch", "data-sensors": "" });
    this.switch.addEventListener("change", () => this.show(this.switch.checked));
    $("layer-switches").append(el("label", { class: "switch", id: "layer-sensors" }, this.switch, bi("传感器", "Sensors")));
    viewer.camera.moveEnd.addEventListener(() => this.shown && this.recluster());
    // A click on a cluster comes closer to it, until its sensors stand apart.
    inspector.pickers.push((picked) => {
      const cluster = picked?.id?.cimSensorCluster;
      if (!cluster) return false;
      this.zoomTo(cluster);
      return true;
    });
  }

  /** Switch the sensor layer on (clustered) or off (only sensors in alert stay). */
  show(on) {
    this.shown = on;
    this.switch.checked = on;
    this.styler.showKind("sensor", on); // the point tiles' sensor features too
    this.recluster();
  }

  /** Regroup the shown sensors by the current view, and show or hide each marker accordingly. */
  recluster() {
    clearTimeout(this.reclusterTimer);
    this.reclusterTimer = undefined;
    if (this.shown) {
      const items = [];
      for (const s of this.sensors.values()) if (s.marker) items.push({ id: s.id, position: s.marker.position, state: this.stateOf(s.id) });
      this.inCluster = this.clusters.update(items);
    } else {
      this.clusters.clear();
      this.inCluster = new Set();
    }
    for (const s of this.sensors.values()) this.setVisibility(s);
    this.viewer.scene.requestRender();
  }

  setVisibility(sensor) {
    if (!sensor?.marker) return;
    sensor.marker.show = this.shown ? !this.inCluster.has(sensor.id) : this.stateOf(sensor.id) === "alert";
  }

  zoomTo(cluster) {
    const positions = cluster.ids.map((id) => this.sensors.get(id)?.marker?.position).filter(Boolean);
    const sphere = Cesium.BoundingSphere.fromPoints(positions);
    const range = Math.max(250, sphere.radius * 2.5);
    this.viewer.camera.flyToBoundingSphere(sphere, {
      offset: new Cesium.HeadingPitchRange(this.viewer.camera.heading, Cesium.Math.toRadians(-50), range),
      duration: 0.8,
    });
  }

  /** How many sensor markers and clusters are drawn now (for the legend and tests). */
  drawn() {
    let markers = 0;
    for (const s of this.sensors.values()) if (s.marker?.show) markers++;
    return { markers, clusters: this.clusters.list.length };
  }

  async start() {
    await this.loadSensors();
    if (this.endpoints.alerts) {
      try {
        for (const a of await getJSON(`/alerts${query({ open: "true" })}`)) this.alerts.set(a.id, a);
      } catch (err) {
        console.warn(`alerts: ${err.message}`);
      }
    }
    if (this.endpoints.sensors) {
      try {
        for (const s of await getJSON("/iot/sensors")) {
          const sensor = this.sensors.get(s.id);
          if (sensor) Object.assign(sensor, { parentKind: s.parent_kind, quantity: s.quantity });
          if (s.latest) this.states.set(s.id, { sensor_id: s.id, ...s.latest });
        }
      } catch (err) {
        console.warn(`sensors: ${err.message}`);
      }
    }
    for (const id of this.sensors.keys()) this.paint(id);
    this.recluster();
    this.renderAlerts();
    if (this.endpoints.live) this.connect();
    else this.setStatus(bi("无实时数据", "live data: not served"), "");
  }

  async loadSensors() {
    let features = [];
    try {
      features = (await getJSON(`/collections/sensor/items${query({ limit: 10000, properties: "name,parent_id" })}`))
        .features;
    } catch (err) {
      if (err.status !== 404) console.warn(`sensors: ${err.message}`);
    }
    for (const f of features) {
      const coords = f.geometry?.type === "Point" ? f.geometry.coordinates : undefined;
      const sensor = { id: f.id, name: f.properties.name, parent: f.properties.parent_id, marker: undefined };
      if (coords) {
        [sensor.lon, sensor.lat] = coords;
        sensor.marker = this.markers.add({
          position: Cesium.Cartesian3.fromDegrees(coords[0], coords[1], 3),
          pixelSize: 9,
          color: COLOURS.none,
          outlineColor: Cesium.Color.BLACK,
          outlineWidth: 1,
          show: false, // the layer starts off; recluster() decides
          // Drawn over everything: a sensor on a buried main is still seen from above.
          disableDepthTestDistance: Number.POSITIVE_INFINITY,
          scaleByDistance: new Cesium.NearFarScalar(500, 1.4, 40000, 0.5),
          id: { cimAssetId: f.id, cimSensor: true },
        });
      }
      this.sensors.set(f.id, sensor);
    }
  }

  connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${window.location.host}/iot/live`);
    this.socket = socket;
    socket.onopen = () => {
      this.retry = 1;
      this.setStatus(bi("实时", "live"), "ok");
    };
    socket.onmessage = (event) => {
      try {
        this.receive(JSON.parse(event.data));
      } catch (err) {
        console.warn(`live message: ${err.message}`);
      }
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.setStatus(bi(`实时连接断开，${this.retry} 秒后重试`, `live: disconnected, retrying in ${this.retry} s`), "bad");
      setTimeout(() => this.connect(), this.retry * 1000);
      this.retry = Math.min(this.retry * 2, 30);
    };
  }

  receive(message) {
    const fresh = [];
    if (message.type === "snapshot") this.alerts.clear();
    for (const reading of message.states ?? []) this.states.set(reading.sensor_id, reading);
    for (const alert of message.alerts ?? []) {
      if (alert.open) {
        if (!this.alerts.has(alert.id) && message.type === "update") fresh.push(alert);
        this.alerts.set(alert.id, alert);
      } else {
        this.alerts.delete(alert.id);
      }
    }
    this.alerting = new Set([...this.alerts.values()].flatMap(sensorsOf));
    const touched = new Set([
      ...(message.states ?? []).map((r) => r.sensor_id),
      ...(message.alerts ?? []).flatMap(sensorsOf),
    ]);
    if (message.type === "snapshot") for (const id of this.sensors.keys()) touched.add(id);
    for (const id of touched) this.paint(id);
    this.renderAlerts();
    if (message.cases?.length) this.onCases?.(message.cases); // case changes: cases.js keeps the map and list
    // Raw alerts pop up for someone at a desk; the wall shows cases (its ticker), not every alert a sensor raises.
    if (document.body.classList.contains("wall")) return;
    for (const alert of fresh) {
      toast(`${biText(...pair(ALERT_SEVERITIES, alert.severity))}: ${alertText(alert)}`, { onclick: () => this.flyToAlert(alert), severity: alert.severity });
    }
  }

  /** The state colour of one sensor: red with an open alert or a bad status, amber for a warning status. */
  stateOf(sensorId) {
    if (this.alerting.has(sensorId)) return "alert";
    const reading = this.states.get(sensorId);
    if (!reading) return "none";
    const status = String(reading.status ?? "").toLowerCase();
    if (BAD.has(status)) return "alert";
    if (WARN.has(status)) return "warning";
    return "ok";
  }

  paint(sensorId) {
    const sensor = this.sensors.get(sensorId);
    const state = this.stateOf(sensorId);
    if (sensor?.marker) {
      sensor.marker.color = COLOURS[state];
      sensor.marker.pixelSize = state === "alert" ? 14 : 9;
      this.setVisibility(sensor);
      // A cluster's colour is its worst member's: regroup once the burst of changes is over.
      if (this.shown && this.inCluster.has(sensorId)) this.reclusterTimer ??= setTimeout(() => this.recluster(), RECLUSTER_MS);
    }
    this.viewer.scene.requestRender();
    this.styler.live.set(sensorId, COLOURS[state]);
    // The watched asset (pipe, lift, building) takes the colour only when something is wrong with it.
    if (sensor?.parent) {
      if (state === "alert" || state === "warning") this.styler.live.set(sensor.parent, COLOURS[state]);
      else this.styler.live.delete(sensor.parent);
    }
    this.styler.refresh();
  }

  renderAlerts() {
    const alerts = this.openAlerts();
    const list = $("alert-list");
    if (!alerts.length) {
      list.replaceChildren(el("li", { class: "empty" }, bi("无告警", "no open alerts")));
    } else {
      list.replaceChildren(...alerts.map((a) => el("li", {
        class: `sev-${a.severity}`,
        "data-alert": a.id,
        onclick: () => this.flyToAlert(a),
      }, alertText(a), el("div", { class: "sub" }, shanghaiTime(a.opened_at)))));
    }
    this.onAlerts?.(alerts);
  }

  openAlerts() {
    return [...this.alerts.values()].sort((a, b) => String(b.opened_at).localeCompare(String(a.opened_at)));
  }

  /** Open alerts counted by the kind of asset their sensor watches. */
  alertsByKind() {
    const counts = {};
    for (const alert of this.alerts.values()) {
      const kind = this.sensors.get(alert.sensor_id)?.parentKind ?? "other";
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    return counts;
  }

  flyToAlert(alert) {
    const sensor = this.sensors.get(alert.sensor_id);
    if (sensor?.lon != null) flyToPoint(this.viewer, sensor.lon, sensor.lat, { range: 500 });
    this.inspector.open(alert.asset_id ?? sensor?.parent ?? alert.sensor_id, {}, { fly: sensor?.lon == null });
  }

  setStatus(text, kind) {
    const node = $("live-status");
    node.replaceChildren(text); // a bi() label
    node.className = `status ${kind}`;
  }
}

/** The sensors an alert names: several sensors on one asset share one alert. */
function sensorsOf(alert) {
  return alert.details?.sensors?.length ? alert.details.sensors : [alert.sensor_id];
}
