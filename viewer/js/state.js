// Shareable state: the URL's query string holds the camera, the visible layers, underground mode and the open query,
// so a copied link reproduces the view. Anything malformed is dropped (the default view is used) and reported once.
//
//   ?tiles=city&cam=121.5,31.23,1500,0,-35&layers=buildings,underground&under=1&q=old-lifts:15&mode=wall
//   &heat=grid_cell (the case heat layer on, at grid_cell, street or district level)
//   &time=2023-06-30 (the city as of that day) · &time=2022-06-30..2023-06-30 (what changed between two days)
//   q forms: old-lifts:<years> · pipes:<network>:<older|>:<lon lat;lon lat;…> · near:<kind>:<near>:<m>:<beyond 0|1>

const NUMBER = /^-?\d+(\.\d+)?$/;
const HEAT_LEVELS = ["grid_cell", "street", "district"];
const TIME = /^(\d{4}-\d{2}-\d{2})(?:\.\.(\d{4}-\d{2}-\d{2}))?$/;

/** Parse the page's query string into {tiles, camera, layers, underground, query, mode, problems}. */
export function readState(search = window.location.search) {
  const params = new URLSearchParams(search);
  const state = { problems: [] };
  state.tiles = params.get("tiles") ?? undefined;
  state.mode = params.get("mode") === "wall" ? "wall" : "normal";
  state.underground = params.get("under") === "1";
  if (params.has("heat")) {
    if (HEAT_LEVELS.includes(params.get("heat"))) state.heat = params.get("heat");
    else state.problems.push("heat");
  }
  if (params.has("time")) {
    const [, date, to] = TIME.exec(params.get("time")) ?? [];
    if (date && !Number.isNaN(Date.parse(date)) && (!to || (!Number.isNaN(Date.parse(to)) && to >= date))) {
      state.time = { date, to };
    } else {
      state.problems.push("time");
    }
  }
  if (params.has("cam")) {
    const parts = params.get("cam").split(",");
    const numbers = parts.map(Number);
    const [lon, lat, height, heading = 0, pitch = -45] = numbers;
    if (
      parts.length >= 3 && parts.length <= 5 && parts.every((p) => NUMBER.test(p.trim())) &&
      Math.abs(lon) <= 180 && Math.abs(lat) <= 90 && height > -1000 && height < 5e7
    ) {
      state.camera = { lon, lat, height, heading, pitch };
    } else {
      state.problems.push("camera");
    }
  }
  if (params.has("layers")) {
    const names = params.get("layers").split(",").filter(Boolean);
    if (names.every((n) => /^[\w-]{1,40}$/.test(n))) state.layers = names;
    else state.problems.push("layers");
  }
  if (params.has("q")) {
    const parsed = parseQuery(params.get("q"));
    if (parsed) state.query = parsed;
    else state.problems.push("query");
  }
  return state;
}

function parseQuery(text) {
  const [type, ...rest] = text.split(":");
  if (type === "old-lifts" && rest.length === 1 && NUMBER.test(rest[0])) {
    return { type, years: Number(rest[0]) };
  }
  if (type === "pipes" && rest.length === 3) {
    const [network, older, ring] = rest;
    const points = ring.split(";").map((pair) => pair.trim().split(/\s+/).map(Number));
    const ok = points.length >= 3 && points.every((p) => p.length === 2 && p.every(Number.isFinite) &&
      Math.abs(p[0]) <= 180 && Math.abs(p[1]) <= 90);
    if (!ok || !/^[\w-]*$/.test(network) || (older && !NUMBER.test(older))) return null;
    return { type, network, older: older ? Number(older) : undefined, ring: points };
  }
  if (type === "near" && rest.length === 4) {
    const [kind, near, distance, beyond] = rest;
    if (!/^\w+$/.test(kind) || !/^\w+$/.test(near) || !NUMBER.test(distance)) return null;
    return { type, kind, near, distance: Number(distance), beyond: beyond === "1" };
  }
  return null;
}

function formatQuery(q) {
  if (!q) return undefined;
  if (q.type === "old-lifts") return `old-lifts:${q.years}`;
  if (q.type === "pipes") {
    const ring = q.ring.map(([lon, lat]) => `${lon.toFixed(6)} ${lat.toFixed(6)}`).join(";");
    return `pipes:${q.network}:${q.older ?? ""}:${ring}`;
  }
  if (q.type === "near") return `near:${q.kind}:${q.near}:${q.distance}:${q.beyond ? 1 : 0}`;
  return undefined;
}

/** Write the current view into the URL without adding a history entry. */
export function writeState({ tiles, camera, layers, underground, query, mode, heat, time }) {
  const params = new URLSearchParams();
  if (tiles) params.set("tiles", tiles);
  if (mode === "wall") params.set("mode", "wall");
  if (camera) {
    const c = camera;
    params.set("cam", [c.lon.toFixed(6), c.lat.toFixed(6), c.height.toFixed(0), c.heading.toFixed(1),
      c.pitch.toFixed(1)].join(","));
  }
  if (layers) params.set("layers", layers.join(","));
  if (underground) params.set("under", "1");
  if (heat) params.set("heat", heat);
  if (time?.date) params.set("time", time.to ? `${time.date}..${time.to}` : time.date);
  const q = formatQuery(query);
  if (q) params.set("q", q);
  const url = `${window.location.pathname}?${params.toString().replaceAll("%2C", ",").replaceAll("%3A", ":")}`;
  window.history.replaceState(null, "", url);
}
