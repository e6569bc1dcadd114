# Sourced by scripts/demo and scripts/test: make sure the virtual environment and the local services exist.
# Idempotent and quick when nothing changed: the venv is rebuilt only when pyproject.toml changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PYTHON="${PYTHON:-python3}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_install() {
  say "installing system packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  local stamp="$VENV/.cim-installed" want
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment in .venv"
    "$PYTHON" -m venv "$VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing the cim package and its dependencies (first time: a few minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[dev]"
    echo "$want" > "$stamp"
  fi
}

postgres_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null; then apt_install postgresql; fi
  local version; version="$(postgres_version)"
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if [ ! -f "/usr/share/postgresql/$version/extension/postgis.control" ]; then
    apt_install "postgresql-$version-postgis-3"
  fi
  ensure_replication "$version"
}

ensure_replication() {  # the read-replica tests make a standby with pg_basebackup (tests/replica.py)
  local version="$1" hba="/etc/postgresql/$1/main/pg_hba.conf"
  if ! as_root grep -qE '^(local|host)[[:space:]]+replication' "$hba"; then
    say "allowing local replication connections in $hba"
    printf 'local replication all trust\nhost replication all 127.0.0.1/32 trust\n' | as_root tee -a "$hba" >/dev/null
    psql -h 127.0.0.1 -U postgres -qAtc 'SELECT pg_reload_conf()' >/dev/null
  fi
  local level; level="$(psql -h 127.0.0.1 -U postgres -qAtc 'SHOW wal_level')"
  if [ "$level" = minimal ]; then
    say "wal_level replica (a restart of PostgreSQL $version)"
    psql -h 127.0.0.1 -U postgres -qAtc "ALTER SYSTEM SET wal_level = replica" >/dev/null
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  fi
}

ensure_mosquitto() {
  if ! command -v mosquitto >/dev/null; then apt_install mosquitto mosquitto-clients; fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    say "starting Mosquitto"
    as_root mkdir -p /var/lib/mosquitto
    as_root mosquitto -d -c "$ROOT/scripts/mosquitto.conf"  # persistence and a queue the IoT ingest needs
    for _ in $(seq 1 10); do (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null && break; sleep 1; done
  fi
}

ensure_gdal() {  # ogrinfo: the API tests run GDAL's OGC API – Features client against a live server
  if ! command -v ogrinfo >/dev/null; then apt_install gdal-bin; fi
}

ensure_qgis() {  # Debian's QGIS (3.22 on Debian 12) and its Python bindings: tests/api/test_qgis.py opens the API in it
  if ! /usr/bin/python3 -c 'import qgis.core' 2>/dev/null; then apt_install qgis python3-qgis; fi
}

ensure_node_tools() {
  # Khronos glTF-Validator for the 3D Tiles tests (tools/gltf-validator); needs node and npm.
  if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  if [ ! -d "$ROOT/tools/gltf-validator/node_modules/gltf-validator" ]; then
    say "installing gltf-validator (npm)"
    npm install --prefix "$ROOT/tools/gltf-validator" --no-audit --no-fund --silent >/dev/null
  fi
  # loaders.gl, the second 3D Tiles client the tiling tests load every tileset in (tools/tiles-reader), and gltfpack.
  if [ ! -d "$ROOT/tools/tiles-reader/node_modules/@loaders.gl/3d-tiles" ] \
    || [ "$ROOT/tools/tiles-reader/package-lock.json" -nt "$ROOT/tools/tiles-reader/node_modules/.package-lock.json" ]; then
    say "installing loaders.gl for the tiling tests (npm ci)"
    (cd "$ROOT/tools/tiles-reader" && npm ci --no-audit --no-fund --silent >/dev/null)
  fi
  # CesiumGS 3d-tiles-tools: the external tileset the mount tests put beside the city is written by it
  # (tests/tiling/external_tilesets.py). Without install scripts: its native add-ons (sharp, sqlite) download
  # prebuilt binaries, which fails offline, and the commands used here need neither.
  if [ ! -x "$ROOT/tools/tiles-tools/node_modules/.bin/3d-tiles-tools" ] \
    || [ "$ROOT/tools/tiles-tools/package-lock.json" -nt "$ROOT/tools/tiles-tools/node_modules/.package-lock.json" ]; then
    say "installing 3d-tiles-tools for the external tileset tests (npm ci)"
    (cd "$ROOT/tools/tiles-tools" && npm ci --ignore-scripts --no-audit --no-fund --silent >/dev/null)
  fi
}

ensure_viewer() {
  # CesiumJS for the viewer (viewer/node_modules, served at /cesium).
  if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
  if [ ! -f "$ROOT/viewer/node_modules/cesium/Build/Cesium/index.js" ] \
    || [ "$ROOT/viewer/package-lock.json" -nt "$ROOT/viewer/node_modules/.package-lock.json" ]; then
    say "installing CesiumJS for the viewer (npm ci)"
    (cd "$ROOT/viewer" && npm ci --no-audit --no-fund --silent >/dev/null)
  fi
}

ensure_chromium() {  # Debian's Chromium drives the viewer's browser tests (never Playwright's own download)
  if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
  # A CJK font: the viewer's labels are Chinese first (区名, 案件); without one they render as empty boxes.
  if ! fc-list :lang=zh 2>/dev/null | grep -q .; then apt_install fonts-wqy-microhei; fi
}

ensure_render() {  # Mesa's EGL: pyvista/VTK render the asset pictures off-screen with it, no X server (cim/render.py)
  if ! ldconfig -p | grep -q 'libEGL_mesa\.so\.0'; then apt_install libegl1 libegl-mesa0 libgl1-mesa-dri; fi
  # A CJK font: the check-up's charts and PDF (cim/report) are Chinese first; fontconfig finds it (fc-list).
  if ! fc-list :lang=zh 2>/dev/null | grep -q .; then apt_install fontconfig fonts-wqy-microhei; fi
}
