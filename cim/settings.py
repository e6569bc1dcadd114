"""Settings, one pydantic-settings class per concern, read from ``CIM_*`` environment variables.

Built once at the edge (the CLI, the app factory) and passed down; nothing reads the environment elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StoreSettings(BaseSettings):
    """Where the city model lives: ``CIM_STORE`` — a DuckDB file path or a ``postgresql://`` URL."""

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    store: str = Field("data/city.duckdb", description="DuckDB file path, duckdb:///path or postgresql://… URL")
    store_read_url: str | None = Field(
        None,
        description="a PostgreSQL streaming replica of the store: the server's read-only requests go there "
        "(cim/api/replica.py)",
    )


class ServerSettings(BaseSettings):
    """How ``cim serve`` listens and what it serves: ``CIM_HOST``, ``CIM_PORT``, ``CIM_TILES_DIR`` …"""

    model_config = SettingsConfigDict(env_prefix="CIM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="server processes on the one port (a PostgreSQL store only)")
    tiles_dir: Path = Path("tiles")
    write_token: str | None = Field(None, description="bearer token every write endpoint requires")
    cors_origins: list[str] = Field(default_factory=list)
    max_active_requests: int = Field(32, ge=1, description="HTTP requests at work at once (cim/api/admission.py)")
    max_waiting_requests: int = Field(1024, ge=0, description="requests queued beyond those; more get 503")
    queue_timeout_s: float = Field(10.0, gt=0, description="longest a request waits in the queue before a 503")
    shutdown_timeout_s: float = Field(5.0, gt=0, description="on SIGTERM, seconds open requests get to finish")
    ws_origins: list[str] | None = Field(
        None,
        description="origins whose pages may open /iot/live besides the server's own ('*': any); default: cors_origins",
    )
    ws_token: str | None = Field(None, description="token /iot/live requires (?token= or subprotocol token.<it>)")
    reports_dir: Path = Field(
        Path("reports"), description="where /reports/checkup-<year>.html|pdf are written when first asked (a cache)"
    )
    targets_file: Path | None = Field(None, description="the plan's target file /targets tracks (queries/targets.py)")
    targets_scale: float | None = Field(None, gt=0, description="the share of the city the model covers, for targets")
    viewer_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "viewer",
        description="the CesiumJS viewer app (with its npm packages installed) served at /",
    )


class AdminSettings(BaseSettings):
    """Write jobs sent to a running server (``cim ingest``/``cim build`` while it serves, cim/api/admin.py):
    ``CIM_ADMIN_MAX_UPLOAD_BYTES``, ``CIM_ADMIN_MAX_QUEUED_JOBS``, ``CIM_ADMIN_UPLOAD_DIR``."""

    model_config = SettingsConfigDict(env_prefix="CIM_ADMIN_", extra="ignore")

    max_upload_bytes: int = Field(2 * 1024**3, ge=1, description="largest file one upload may send")
    max_queued_jobs: int = Field(8, ge=1, description="jobs waiting behind the running one; more get 503")
    upload_dir: Path | None = Field(None, description="where uploads wait for their job (default: a temp folder)")
    dask_cluster: str | None = Field(
        None,
        validation_alias="CIM_DASK_CLUSTER",
        description="Dask scheduler whose workers encode build jobs' tiles (default: a local cluster per job)",
    )


class MqttSettings(BaseSettings):
    """The sensors' broker: ``CIM_MQTT_URL`` (``mqtt://[user:password@]host[:port]``, ``mqtts://`` for TLS), the
    topic filter, the client id, credentials and the CA of a private TLS broker; ``CIM_MQTT_SHARE_GROUP`` makes
    several servers share one subscription (``$share/<group>/<topic>``: the broker hands each message to one)."""

    model_config = SettingsConfigDict(env_prefix="CIM_MQTT_", extra="ignore")

    url: str | None = None
    topic: str = "cim/+/state"
    client_id: str | None = Field(
        None, description="the persistent session's client id; default cim-<host>-<port>-<store digest>"
    )
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(None, description="CA certificates (PEM) for mqtts://, else the system's")
    share_group: str | None = Field(
        None,
        description="a shared subscription's group: every server of the group subscribes to $share/<group>/<topic> "
        "and the broker hands each message to one of them (cim/iot/mqtt.py)",
    )

    @field_validator("share_group")
    @classmethod
    def _plain_group_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c in value for c in "/+#")):
            raise ValueError(f"CIM_MQTT_SHARE_GROUP {value!r} must be a non-empty name without '/', '+' or '#'")
        return value


class IotSettings(BaseSettings):
    """The IoT ingest: ``CIM_IOT_SPOOL`` — its write-ahead spool (SQLite), default beside the store."""

    model_config = SettingsConfigDict(env_prefix="CIM_IOT_", extra="ignore")

    spool: Path | None = None


class AppSettings(BaseModel):
    """Everything the web app needs, gathered once at the edge: where the store is and how the server serves."""

    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    live: bool = Field(False, description="run the IoT service: ingest, rules, alerts, the live WebSocket")
    viewer: bool = Field(False, description="serve the viewer at / when its files are installed")
    iot: IotSettings = Field(default_factory=IotSettings)
