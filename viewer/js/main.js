// The viewer's start: read the shared state from the URL, build the scene from what the server holds, wire the
// panels, and keep the URL in step with the view.
import * as Cesium from "./cesium.js";
import { getJSON, onServerChange } from "./api.js";
import { Areas } from "./areas.js";
import { usePrecomputedBrdfLut } from "./brdf.js";
import { CaseBoard } from "./caseboard.js";
import { CasePanel } from "./casepanel.js";
import { Cases } from "./cases.js";
import { Ground } from "./ground.js";
import { bi, biName, biText, initLang } from "./i18n.js";
import { Inspector } from "./inspect.js";
import { Layers } from "./layers.js";
import { Legend } from "./legend.js";
import { Live } from "./live.js";
import { Measure } from "./measure.js";
import { Queries } from "./queries.js";
import { Section } from "./section.js";
import { Search } from "./search.js";
import { readState, writeState } from "./state.js";
import { Styler } from "./styler.js";
import { Timeline } from "./timeline.js";
import { $, banner, setStatus, toast } from "./ui.js";
import { Underground } from "./underground.js";
import { cameraState, createViewer, setCamera } from "./viewer.js";
import { Wall } from "./wall.js";

const started = performance.now();
const state = readState();
const viewer = createViewer($("map"));
const styler = new Styler();
let tilesName;
let ready = false;
let casesReady = Promise.resolve(false);

// Exposed for tests and for people debugging in the console; the app itself does not read it.
window.cim = { Cesium, viewer, styler, state, timings: {} };

function saveState() {
  if (!ready) return;
  writeState({
    tiles: tilesName,
    camera: cameraState(viewer),
    layers: layers.visible(),
    underground: underground.on,
    query: queries.current,
    mode: wall?.on ? "wall" : "normal",
    heat: areas.heat.on && !wall?.on ? areas.heat.level : undefined,
    time: timeline.date ? { date: timeline.date, to: timeline.to } : undefined,
  });
}

const layers = new Layers(viewer, styler, saveState);
const underground = new Underground(viewer, saveState, { styler });
const legend = new Legend({ layers, underground, styler });
window.cim.underground = underground;
window.cim.legend = legend;
const inspector = new Inspector(viewer, styler);
const queries = new Queries({ viewer, styler, inspector, layers, underground, onChange: saveState });
const areas = new Areas(viewer);
window.cim.search = new Search({ viewer, inspector });
const areaName = (code) => {
  const props = areas.area(code)?.properties;
  return props?.name ? biText(props.name, props.name_en) : code; // in the chosen language (lists re-render on a switch)
};
const casePanel = new CasePanel({ viewer, inspector, areaName });
const cases = new Cases({ viewer, panel: casePanel, onChange: saveState });
cases.areaName = areaName;
casePanel.unitName = (p) => cases.unitName(p);
// A case marker opens its case; a heat area narrows the case list to it.
inspector.pickers.push((picked) => {
  if (picked?.id?.cimCaseId) {
    cases.open(picked.id.cimCaseId);
    return true;
  }
  if (picked?.id?.cimArea && cases.available) {
    cases.setFilter({ area: picked.id.cimArea, areaName: picked.id.name });
    return true;
  }
  return false;
});
const timeline = new Timeline({ viewer, styler, inspector, onChange: saveState });
window.cim.time = timeline;
legend.timeline = timeline;
timeline.onUpdate.add(() => {
  legend.update();
  if (wall?.on) wall.refresh();
});
const measure = new Measure(viewer, inspector);
const section = new Section(viewer, inspector, layers);
window.cim.measure = measure;
window.cim.section = section;
window.cim.areas = areas;
window.cim.cases = cases;
window.cim.casePanel = casePanel;
initLang(() => {
  areas.relabel();
  measure.draw(); // the map labels take the chosen language
  window.cim.live?.renderAlerts(); // alert texts are plain text (the ticker's too)
  if (wall?.on) wall.refresh();
  if (cases.available) {
    cases.buildFilters();
    cases.setAreas(districtsOf(areas));
    cases.renderList();
  }
});
let wall;

onServerChange((up) => banner(up ? undefined : biText("CIM 服务器无响应，正在重试…", "The CIM server does not answer — retrying…")));

async function start() {
  if (state.problems.length) toast(biText(`链接中的 ${state.problems.join("、")} 无法读取，显示默认视图。`, `The link's ${state.problems.join(", ")} could not be read; showing the default.`));
  // Asked side by side: each is a round trip before the first tile can be requested.
  const brdf = usePrecomputedBrdfLut(viewer.scene);
  const held = getJSON("/collections").then((c) => c.collections).catch(() => []);
  let config = { tilesets: [], endpoints: {} };
  try {
    config = await getJSON("/viewer/config.json");
  } catch (err) {
    setStatus([bi("服务器", "server"), `: ${err.message}`], "bad");
  }
  const endpoints = config.endpoints ?? {};
  tilesName = state.tiles ?? config.tilesets?.[0];
  await brdf; // before any model is drawn

  // Tiles first, ground layers after the first frame with tiles; a failure of one is shown and the rest goes on.
  const tiles = tilesName === undefined
    ? Promise.reject(new Error("the server has no built tilesets"))
    : layers.load(tilesName ? `/tiles/${tilesName}` : "/tiles", state.layers);
  const collections = await held;
  queries.setKinds(collections); // the query forms offer only the kinds the store holds
  const extent = unionExtent(collections);
  // The ground layers are drawn after the first frame with tiles (or 15 s, or a tileset failure): drawn before, their
  // geometry and shaders delayed that frame by about a second in headless Chromium. Their switches show at once.
  const firstTile = tiles
    .then(() => Promise.race([layers.firstTile, new Promise((resolve) => setTimeout(resolve, 15000))]))
    .catch(() => undefined);
  const ground = new Ground(viewer).load(collections, extent, firstTile);
  // The areas (district, street, grid cell) and the cases after the first frame with tiles too, for the same reason.
  const caseLayers = firstTile.then(() => startCases(collections, endpoints)).catch((err) => {
    console.warn(`cases: ${err.message}`);
  });
  casesReady = caseLayers.then(() => cases.available);
  const places = await loadPlaces(endpoints, extent);
  window.cim.timings.configMs = performance.now() - started;

  if (state.camera) await setCamera(viewer, state.camera);
  else if (places.length) await setCamera(viewer, places[0]);
  else if (extent) viewer.camera.setView({ destination: Cesium.Rectangle.fromDegrees(...extent) });

  try {
    const groups = await tiles;
    legend.watch();
    setStatus([tilesName ? biName(tilesName) : bi("瓦片", "tiles"), ": ", bi(`${groups.length} 个图层`, groups.join(", "))], "ok");
    layers.firstTile.then(() => {
      // From navigation start, as the target counts it.
      window.cim.timings.firstTileMs = performance.now();
    });
    if (!state.camera && !places.length && !extent) {
      const sphere = layers.boundingSphere();
      if (sphere) viewer.camera.flyToBoundingSphere(sphere, { duration: 0 });
    }
  } catch (err) {
    setStatus([bi("瓦片不可用", "tiles unavailable"), `: ${err.message}`], "bad");
    toast(biText(`三维瓦片无法加载（${err.message}）；地面图层和查询仍可使用。`, `The 3D tiles could not be loaded (${err.message}); ground layers and queries still work.`));
  }

  if (state.underground) underground.set(true);
  // The time slider, where the server keeps the model's history; a shared link's day is shown before "ready".
  const timeReady = timeline.start(endpoints, state.time).catch((err) => console.warn(`time: ${err.message}`));
  const live = new Live({
    viewer,
    styler,
    inspector,
    endpoints,
    onAlerts: (alerts) => {
      legend.later(); // an alert shows its sensor even with the sensor layer off
      if (wall?.on) wall.updateTicker(alerts);
    },
    onCases: (changes) => cases.receive(changes),
  });
  const board = new CaseBoard({ cases, areas });
  wall = new Wall({ viewer, live, endpoints, places, extent, onChange: saveState, board, areas, asOf: () => timeline.asOf() });
  window.cim.wall = wall;
  window.cim.live = live;
  legend.connect({ live, cases, areas });
  window.cim.queries = queries;
  const liveReady = live.start();
  if (state.query) {
    queries.fillForm(state.query);
    queries.run(state.query);
  }
  if (state.mode === "wall") {
    await liveReady;
    await casesReady; // the wall shows cases where the server has them
    await wall.set(true);
    wall.startTour();
  }
  window.cim.timings.placedMs = performance.now() - started;
  await ground;
  legend.update();
  window.cim.timings.groundMs = performance.now() - started;
  await caseLayers;
  await timeReady;
  measure.warmUp();
  ready = true;
  saveState();
  viewer.camera.moveEnd.addEventListener(saveState);
  window.cim.ready = true;
}

/** The area layers the store holds, then the cases when the server has them; the heat layer and the area filter. */
async function startCases(collections, endpoints) {
  await areas.load(collections);
  if (!(await cases.start(endpoints, collections))) return;
  cases.setAreas(districtsOf(areas));
  const heat = $("case-heat");
  const level = $("heat-level");
  const apply = async () => {
    await areas.setHeat(heat.checked, level.value);
    saveState();
  };
  heat.addEventListener("change", apply);
  level.addEventListener("change", apply);
  let timer;
  cases.onLive(() => {
    clearTimeout(timer);
    timer = setTimeout(() => areas.refreshHeat(), 5000);
  });
  setInterval(() => areas.refreshHeat(), 30000);
  if (state.heat) {
    heat.checked = true;
    level.value = state.heat;
    await apply();
  }
}

/** The districts the areas layer loaded, by Chinese name, for the area filter. */
function districtsOf(layer) {
  const districts = layer.layers.get("district")?.features ?? new Map();
  return [...districts.values()]
    .map((f) => ({ code: f.properties?.code ?? f.id, name: f.properties?.name, name_en: f.properties?.name_en }))
    .sort((a, b) => String(a.code).localeCompare(String(b.code)));
}

/** The lon/lat box around every collection's extent, or undefined for an empty store. */
function unionExtent(collections) {
  const boxes = collections.map((c) => c.extent?.spatial?.bbox?.[0]).filter((b) => b && b[0] > -180);
  if (!boxes.length) return undefined;
  return [
    Math.min(...boxes.map((b) => b[0])),
    Math.min(...boxes.map((b) => b[1])),
    Math.max(...boxes.map((b) => b[2])),
    Math.max(...boxes.map((b) => b[3])),
  ];
}

/** The tour's places: the server's /places when it has them, else the viewer's list, kept to those in the city. */
async function loadPlaces(endpoints, extent) {
  let places = [];
  try {
    const body = await getJSON(endpoints.places ? "/places" : "/viewer/places.json");
    places = Array.isArray(body) ? body : body.places ?? [];
  } catch (err) {
    console.warn(`places: ${err.message}`);
  }
  if (extent) {
    const [w, s, e, n] = extent;
    const margin = 0.05;
    places = places.filter((p) => p.lon >= w - margin && p.lon <= e + margin && p.lat >= s - margin && p.lat <= n + margin);
    if (!places.length) {
      const lon = (w + e) / 2;
      const lat = (s + n) / 2;
      const span = Math.max(e - w, n - s) * 111000;
      places = [{ name: "City", name_zh: "全市", lon, lat, height: Math.max(800, span), heading: 0, pitch: -40 }];
    }
  }
  // Look from south of the place at it, not straight down on it: a place's lon/lat is what is looked at.
  return places.map((p) => {
    const height = p.height ?? 1500;
    const pitch = p.pitch ?? -35;
    const back = height / Math.tan(Cesium.Math.toRadians(-pitch)) / 111000;
    const heading = Cesium.Math.toRadians(p.heading ?? 0);
    return {
      ...p,
      height,
      pitch,
      heading: p.heading ?? 0,
      lon: p.lon - (back * Math.sin(heading)) / Math.cos(Cesium.Math.toRadians(p.lat)),
      lat: p.lat - back * Math.cos(heading),
    };
  });
}

window.addEventListener("keydown", (event) => {
  if (event.target.closest?.("input, select, textarea")) return;
  const key = event.key.toLowerCase();
  if (key === "w") wall?.toggle();
  else if (key === "t") wall?.toggleTour();
  else if (key === "u") underground.toggle();
  else if (key === "escape") {
    inspector.close();
    queries.clear();
  }
});

start().catch((err) => {
  console.error(err);
  setStatus([bi("启动失败", "start failed"), `: ${err.message}`], "bad");
});
