// Command-centre mode (?mode=wall or the W key): full screen, large type, the city's vital signs, a ticker and a
// guided tour that flies between the named places and pauses on each. Where the server has cases, the case board
// (caseboard.js) shows the on-time rate and open/overdue cases by district, the districts are filled by their open
// cases, and the ticker shows new cases; else it shows the open alerts.
import { getJSON, postJSON, query } from "./api.js";
import { ALERT_SEVERITIES, alertText, biName, biText, currentLang, pair } from "./i18n.js";
import { $, el, formatNumber } from "./ui.js";
import { isSoftware, setCamera } from "./viewer.js";

const REFRESH_S = 60;
const PAUSE_S = 8;
const FLIGHT_S = 5;
/** Drawing-buffer width of the wall in software WebGL: ≥ 10 fps at 1920×1080 (scale 0.3) in headless Chromium. */
const SOFTWARE_WIDTH = 576;
/** The per-district panel: buried gas mains 30+ years old, by district, from the aggregate endpoint. */
const OLD_MAINS = `/collections/pipe/aggregate${query({ group_by: "district,age_band", filter: "network = 'gas'" })}`;
const TOP_DISTRICTS = 8;

export class Wall {
  constructor({ viewer, live, endpoints, places, extent, onChange, board, areas, asOf }) {
    // asOf(): the day the time slider shows the city as of (timeline.js), undefined for now
    Object.assign(this, { viewer, live, endpoints, places, extent, onChange, board, areas, asOf });
    this.heatBefore = undefined; // the side panel's heat layer, restored when the wall is left
    this.on = false;
    this.touring = false;
    this.timer = undefined;
    this.normalScale = viewer.resolutionScale;
  }

  async set(on) {
    this.on = on;
    document.body.classList.toggle("wall", on);
    $("wall").hidden = !on;
    // A wall is large: render below its native resolution to keep the frame rate up. In software WebGL the frame cost
    // follows the pixel count: at 1920×1080 in headless Chromium (two busy cores) scale 0.6 ran 5–8 fps, 0.4 8–13,
    // 0.3 11–18; the buildings still read at 0.3. With a GPU, 1600 pixels across is plenty.
    const across = isSoftware(this.viewer.scene) ? SOFTWARE_WIDTH : 1600;
    const wallScale = Math.min(this.normalScale, across / Math.max(1, window.innerWidth));
    this.viewer.resolutionScale = on ? wallScale : this.normalScale;
    this.viewer.scene.postProcessStages.fxaa.enabled = !on && !isSoftware(this.viewer.scene);
    this.viewer.scene.requestRender();
    if (on) {
      document.documentElement.requestFullscreen?.().catch(() => {
        /* needs a user gesture: fine when entered by key, ignored when opened from the URL */
      });
      if (this.hasCases()) await this.showCases(true);
      await this.refresh();
      this.timer = setInterval(() => this.refresh(), REFRESH_S * 1000);
    } else {
      clearInterval(this.timer);
      if (this.board?.on) await this.showCases(false);
      this.stopTour();
      if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    }
    this.onChange();
  }

  toggle() {
    return this.set(!this.on);
  }

  hasCases() {
    return Boolean(this.board?.cases.available);
  }

  /** The case board and the districts' heat on the wall; the side panel's own heat setting again when off. */
  async showCases(on) {
    if (on && this.areas?.layers.has("district")) {
      this.heatBefore = { ...this.areas.heat };
      this.areas.setHeat(true, "district");
    } else if (!on && this.heatBefore) {
      this.areas.setHeat(this.heatBefore.on, this.heatBefore.level);
      this.heatBefore = undefined;
    }
    await this.board.set(on);
  }

  /** The vital signs: the server's /indicators (as of the time slider's day) when it has them, else the ones the
   * viewer can ask for itself. */
  async refresh() {
    let vitals;
    if (this.endpoints.indicators) {
      try {
        vitals = normaliseVitals(await getJSON(`/indicators${query({ as_of: this.asOf?.() })}`));
      } catch (err) {
        console.warn(`indicators: ${err.message}`);
      }
    }
    vitals ??= await this.ownVitals();
    $("vital-list").replaceChildren(...vitals.map((v) =>
      el("div", { class: `vital${v.bad ? " bad" : ""}`, "data-vital": v.id },
        el("div", { class: "value" }, v.value), el("div", { class: "label" }, v.label))));
    await this.refreshDistricts();
    if (this.board?.on) await Promise.all([this.board.refresh(), this.areas?.refreshHeat()]);
    else this.updateTicker(this.live.openAlerts());
  }

  /** Kilometres of gas mains 30+ years old in each district, the top ones, Chinese names first; hidden when the
   * server has no aggregate endpoint or the city no districts. */
  async refreshDistricts() {
    const panel = $("district-panel");
    let rows = [];
    try {
      const body = await getJSON(OLD_MAINS);
      rows = body.groups
        .filter((g) => g.key.district !== null && g.key.age_band === "30+" && g.length_m)
        .map((g) => ({ name: biText(g.names.district.zh, g.names.district.en) || g.key.district, km: g.length_m / 1000 }))
        .sort((a, b) => b.km - a.km)
        .slice(0, TOP_DISTRICTS);
    } catch (err) {
      console.warn(`district panel: ${err.message}`);
    }
    panel.hidden = rows.length === 0;
    const most = Math.max(1, ...rows.map((r) => r.km));
    $("district-mains").replaceChildren(...rows.map((r) =>
      el("tr", { "data-district": r.name },
        el("td", {}, r.name),
        el("td", { class: "num" }, formatNumber(r.km, 1)),
        el("td", {}, el("span", { class: "bar", style: `width: ${((6 * r.km) / most).toFixed(2)}em` })))));
  }

  async ownVitals() {
    const vitals = [];
    try {
      const lifts = await getJSON(`/queries/old-lifts${query({ years: 15 })}`);
      const count = lifts.buildings.reduce((n, b) => n + b.lifts.length, 0);
      vitals.push({ id: "old-lifts", value: formatNumber(count), label: biText(`超过15年的电梯，分布在 ${formatNumber(lifts.buildings.length)} 栋建筑`, `lifts older than 15 years, in ${formatNumber(lifts.buildings.length)} buildings`) });
    } catch (err) {
      vitals.push({ id: "old-lifts", value: "—", label: `${biText("超过15年的电梯", "lifts older than 15 years")} (${err.message})` });
    }
    if (this.extent) {
      try {
        const [w, s, e, n] = this.extent;
        const area = { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] };
        const gas = await postJSON("/queries/buried-pipes", { area, network: "gas", older_than: 30 });
        vitals.push({ id: "old-gas", value: `${formatNumber(gas.total_length_m / 1000, 1)} km`, label: biText("超过30年的埋地燃气管", "buried gas mains older than 30 years") });
      } catch (err) {
        vitals.push({ id: "old-gas", value: "—", label: `${biText("老旧燃气管", "old gas mains")} (${err.message})` });
      }
    }
    const byKind = this.live.alertsByKind();
    const total = Object.values(byKind).reduce((a, b) => a + b, 0);
    const detail = Object.entries(byKind).map(([k, n]) => `${k} ${n}`).join(", ");
    vitals.push({ id: "alerts", value: formatNumber(total), label: `${biText("未关闭告警", "open alerts")}${detail ? `: ${detail}` : ""}`, bad: total > 0 });
    return vitals;
  }

  updateTicker(alerts) {
    if (this.board?.on) return; // the ticker shows new cases
    const text = alerts.length
      ? alerts.map((a) => `⚠ ${biText(...pair(ALERT_SEVERITIES, a.severity))} ${alertText(a)}`).join("     ")
      : biText("无告警", "no open alerts");
    if ($("ticker-text").textContent !== text) $("ticker-text").textContent = text;
  }

  async startTour() {
    if (!this.places.length || this.touring) return;
    this.touring = true;
    const caption = $("tour-caption");
    let index = 0;
    while (this.touring) {
      const place = this.places[index % this.places.length];
      caption.replaceChildren(biName(place.name_zh, place.name)); // the switch shows one or both
      caption.hidden = false;
      await setCamera(this.viewer, place, FLIGHT_S);
      const until = performance.now() + PAUSE_S * 1000;
      while (this.touring && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 250));
      index += 1;
    }
    caption.hidden = true;
  }

  stopTour() {
    this.touring = false;
    this.viewer.camera.cancelFlight();
  }

  toggleTour() {
    if (this.touring) this.stopTour();
    else this.startTour();
  }
}

/** Chinese counters of the server's units (it writes them in English); units such as km and % stay. */
const ZH_UNITS = { lifts: "部", sensors: "个", alerts: "条", homes: "户", stops: "个", buildings: "栋" };

/** A unit: its Chinese counter in 中 mode, else the server's (a count of lifts reads "808 lifts" beside Chinese),
 * singular for a count of one ("1 alert"). */
function unitText(unit, value) {
  if (currentLang() === "zh") return ZH_UNITS[unit] ?? unit;
  return value === 1 && ZH_UNITS[unit] && unit.endsWith("s") ? unit.slice(0, -1) : unit;
}

/** Chinese names of the server's vital signs (it labels them in English), Chinese first on the wall. */
const ZH_VITALS = {
  old_lifts: "超过15年的电梯",
  old_lifts_share: "超过15年电梯占比",
  old_gas_mains_km: "超过30年的埋地燃气管",
  old_water_mains_km: "超过30年的埋地供水管",
  homes_near_park: "500米内有公园的住宅",
  stops_near_metro: "50米内有地铁口的公交站",
  sensors_reporting: "在线传感器",
  open_alerts: "未关闭告警",
};

/** The quantities sensors measure, for the open alerts by quantity. */
const QUANTITIES_ZH = {
  gas_pressure: "燃气压力", water_pressure: "水压", water_level: "水位", flow: "流量", temperature: "温度",
  vibration: "振动", tilt: "倾斜", lift_status: "电梯状态", power: "电力", air_quality: "空气质量",
};

function zhLabel(id) {
  const key = String(id ?? "");
  if (ZH_VITALS[key]) return ZH_VITALS[key];
  if (key.startsWith("open_alerts.")) return `未关闭告警：${QUANTITIES_ZH[key.slice("open_alerts.".length)] ?? key.slice("open_alerts.".length)}`;
  return undefined;
}

/** Accept {"indicators": [{id, label, value, unit}]}, a list of those, or {name: value | {value, unit, label}}. */
export function normaliseVitals(body) {
  const items = Array.isArray(body) ? body : Array.isArray(body?.indicators) ? body.indicators : undefined;
  const list = items ?? Object.entries(body ?? {}).map(([id, v]) => (typeof v === "object" && v ? { id, ...v } : { id, value: v }));
  return list.map((item) => {
    const value = typeof item.value === "number" ? formatNumber(item.value, Number.isInteger(item.value) ? 0 : 1) : String(item.value ?? "—");
    return {
      id: item.id ?? item.name,
      value: item.unit ? `${value} ${unitText(item.unit, item.value)}` : value,
      label: biText(zhLabel(item.id ?? item.name), item.label ?? item.title ?? String(item.id ?? item.name).replaceAll("_", " ")),
      bad: Boolean(item.bad ?? item.alert),
    };
  });
}
