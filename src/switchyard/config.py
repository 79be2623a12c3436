"""One typed configuration: a YAML file, or a default built from the environment.

String values in the file may use ``${env.X}`` (required), ``${env.X:=default}``
(default when unset or empty) and ``${env.X:+value}`` (``value`` only when X is set).
A provider whose ``id`` comes out empty is dropped, so ``id: ${env.GROQ_API_KEY:+groq}``
enables a provider only when its key is present. Settings that the CLI also takes can
come from ``SWITCHYARD_*`` environment variables; the CLI sets those same variables so
that every worker process builds the identical config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from switchyard.errors import ConfigError

ModelType = Literal["llm", "embedding"]
RecordMode = Literal["live", "record", "replay", "record-if-missing"]
# Names both logging and uvicorn know ("warn" is not one of uvicorn's).
LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class _Strict(BaseModel):
    # Our own config forbids unknown keys so that a typo fails at start.
    model_config = ConfigDict(extra="forbid")


_SWITCH_WORDS = {
    **dict.fromkeys(("true", "1", "yes", "on", "t", "y"), True),
    **dict.fromkeys(("false", "0", "no", "off", "f", "n"), False),
}


class ProviderConfig(_Strict):
    # At most the store's provider_id column; no "/", which ends the provider's part of
    # a model id (together/meta-llama/...).
    id: str = Field(max_length=128, pattern=r"^[^/]+$")
    type: str
    base_url: str | None = None
    api_key: str | None = None
    allowed_models: list[str] | None = None
    # Seconds of silence from the provider; the openai SDK's own default, since a model
    # that reasons before a non-streamed answer sends nothing for minutes.
    timeout: float = Field(default=600.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    discover: bool = True
    # How the provider's TLS certificate is checked: true, the system's trust store (and
    # SSL_CERT_FILE / SSL_CERT_DIR); a path, only the CA certificates of that PEM file (a
    # private CA); false, not at all (a test server; logged at start).
    tls_verify: bool | str = True
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tls_verify", mode="before")
    @classmethod
    def _tls_switch(cls, value: Any) -> Any:
        # From ${env.X}, a switch arrives as a string: the words pydantic takes as a bool
        # for the other switches are one here too, not a file's name.
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _SWITCH_WORDS:
                return _SWITCH_WORDS[word]
            if not word:
                raise ValueError("give true, false or the path of a PEM file of CA certificates")
        return value


class ModelConfig(_Strict):
    provider_id: str
    provider_model_id: str
    id: str | None = None
    # None: the type the provider lists the model with, if it says.
    model_type: ModelType | None = None
    aliases: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _json_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Served as JSON in /v1/models: a key YAML reads as a number or a bool at any
        # depth ({1000: 0.5}, {on: true}) could not be written there.
        _check_json_keys(value, "metadata")
        return value

    @property
    def model_id(self) -> str:
        return self.id or f"{self.provider_id}/{self.provider_model_id}"


_YAML_KINDS = {bool: "boolean", int: "number", float: "number"}


def _check_json_keys(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                kind = _YAML_KINDS.get(type(key), type(key).__name__)
                raise ValueError(
                    f"{where} has the key {key!r}, which YAML read as a {kind}, not text "
                    "(as it reads 1000, on or yes); put the key in quotes"
                )
            _check_json_keys(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_keys(item, f"{where}[{i}]")


class StoreConfig(_Strict):
    """The inference store. ``url``: None for SQLite in the data directory, a
    ``sqlite:///path`` or a ``postgresql://`` URL. ``durability: sync`` makes each
    request wait (up to ``sync_timeout`` seconds) until its row is committed.
    ``flush_interval`` is how long the writer lingers to fill a batch (async only; cut
    short by a full batch, a read of the worker's own rows and shutdown): what a crash
    of the worker (kill -9, out of memory) may lose, and how long another worker may
    not see a row;
    ``close_timeout`` bounds the flush at shutdown while the database is down.
    ``writer``: ``process`` writes in a process of its own per worker (the request path
    then spends almost nothing on the store); ``thread`` writes in a thread of the
    worker (one process fewer, but its work shares the worker's CPU and GIL)."""

    url: str | None = None
    enabled: bool = True
    policy: Literal["all", "opt-in"] = "all"
    durability: Literal["async", "sync"] = "async"
    queue_size: int = Field(default=10_000, gt=0)
    batch_size: int = Field(default=200, gt=0)
    flush_interval: float = Field(default=0.5, ge=0)
    sync_timeout: float = Field(default=10.0, gt=0)
    close_timeout: float = Field(default=20.0, ge=0)
    writer: Literal["process", "thread"] = "process"


class RecordingConfig(_Strict):
    """Record or replay provider traffic (see :mod:`switchyard.recording`).

    ``cassettes`` is the directory; ``cassette`` names the file recorded into
    (``<cassettes>/<cassette>.json``). Replay reads every cassette of the directory, or
    only the named one with ``replay_from: cassette``. ``ignore_fields`` are dotted body
    fields left out of matching (``user``, ``seed``, ``messages.name``); ``realtime``
    replays streams at their recorded pace instead of at once. ``session`` names the
    record session: in ``record`` mode the session's first write starts the cassette
    afresh and its later writes append. By default each server run is one session; the
    pytest plugin makes a whole test run one, so tests sharing a cassette all keep theirs.
    ``test_id`` (set by the pytest plugin) tags what is recorded with the test that
    recorded it, and replay prefers that test's recordings: tests sharing a cassette
    each get their own answers, whichever of them run and in whatever order.
    """

    mode: RecordMode = "live"
    cassettes: str | None = None
    cassette: str = Field(default="default", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-\[\]]*$")
    ignore_fields: list[str] = Field(default_factory=list)
    realtime: bool = False
    replay_from: Literal["directory", "cassette"] = "directory"
    session: str | None = Field(default=None, pattern=r"^[\x21-\x7e]{1,64}$")
    test_id: str | None = None


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8321, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    model_refresh_interval: float = Field(default=300.0, gt=0)
    discovery_timeout: float = Field(default=10.0, gt=0)
    log_level: LogLevel = "info"
    access_log: bool = False
    # Keys a client must send as "Authorization: Bearer <key>"; none: no key needed.
    # Printable ASCII without commas: what an HTTP header carries, and SWITCHYARD_API_KEYS
    # separates with commas.
    api_keys: list[Annotated[str, Field(pattern=r"^[\x21-\x2b\x2d-\x7e]+$")]] = Field(
        default_factory=list
    )
    # Web pages whose requests are answered (with CORS headers), besides loopback ones:
    # "https://app.example.com", or "*" for any (server/browsers.py says why).
    allowed_origins: list[str] = Field(default_factory=list)
    # Host names a client may connect by on a loopback address with no api_keys, besides
    # localhost and IP addresses ("*": any).
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "null":
                raise ValueError(
                    "'null' is the origin of any sandboxed page or local file: it would "
                    "let every web page in; list the app's real origin, or '*' to mean all"
                )
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme, host and port as a browser "
                    "sends them (https://app.example.com, http://10.0.0.2:3000), or '*' for any"
                )
        return origins


_ORIGIN = re.compile(r"^(\*|[A-Za-z][\w+.-]*://[^/\s]+/?)$")


class Config(_Strict):
    data_dir: str | None = None
    server: ServerConfig = Field(default_factory=ServerConfig)
    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)
    store: StoreConfig = Field(default_factory=StoreConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)

    @field_validator("server", "providers", "models", "store", "recording", mode="before")
    @classmethod
    def _empty_section(cls, value: Any, info: ValidationInfo) -> Any:
        # A section whose every line is commented out ("server:" alone) is YAML's null:
        # the defaults, as if it were not there.
        if value is not None:
            return value
        return [] if info.field_name in ("providers", "models") else {}

    @field_validator("providers")
    @classmethod
    def _unique_ids(cls, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        seen: set[str] = set()
        for provider in providers:
            if provider.id in seen:
                raise ValueError(f"provider id '{provider.id}' appears twice")
            seen.add(provider.id)
        return providers

    @model_validator(mode="after")
    def _models_name_providers(self) -> Config:
        known = {p.id for p in self.providers}
        for i, model in enumerate(self.models):
            if model.provider_id not in known:
                raise ValueError(
                    f"models[{i}] ({model.model_id}) names provider '{model.provider_id}', "
                    f"which is not configured (providers: {', '.join(sorted(known)) or 'none'})"
                )
        self._unique_model_names()
        return self

    def _unique_model_names(self) -> None:
        """Each id and alias names one model: a second one would silently take the name
        from the first, which then answers to nothing."""
        named: dict[str, tuple[int, str]] = {}
        for i, model in enumerate(self.models):
            names = [(model.model_id, "the id"), *((a, "an alias") for a in model.aliases)]
            for name, what in names:
                j, was = named.setdefault(name, (i, what))
                if j != i:
                    raise ValueError(
                        f"models[{i}]: '{name}' is already {was} of models[{j}]; give each "
                        "model its own id and aliases"
                    )

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(base) / "switchyard"


# A default holds no "${" (nesting is not read): ${env.A:=${env.B}} is refused whole.
_ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(?:(:=|:\+)((?:[^}$]|\$(?!\{))*))?\}")
# What is left of any other ${...} form once those are read: ${OPENAI_API_KEY},
# ${env.X:-default} (the shell's), which would otherwise be sent as the key itself.
_UNREAD = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_.]*")


def substitute_env(value: str, env: Mapping[str, str], where: str = "") -> str:
    """Expand ``${env.X}``, ``${env.X:=default}`` and ``${env.X:+value}`` in one string."""

    def expand(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name, "")
        if op == ":=":
            return current or arg
        if op == ":+":
            return arg if current else ""
        if name not in env:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return current

    if (unread := _UNREAD.search(_ENV_REF.sub("", value))) is not None:
        # Named without the rest: a default given there may be a key.
        raise ConfigError(
            f"{where}: '{unread.group(0)}' starts a ${{...}} form Switchyard does not "
            "read; use ${env.X}, ${env.X:=default} or ${env.X:+value}"
        )
    return _ENV_REF.sub(expand, value)


def _substitute_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return substitute_env(node, env, where)
    if isinstance(node, list):
        return [_substitute_tree(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, dict):
        return {k: _substitute_tree(v, env, f"{where}.{k}") for k, v in node.items()}
    return node


def _replay_needs_no_keys(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """In replay, a provider's ``api_key`` naming a variable that is not set is no key,
    not an error: a config written for recording (``${env.TOGETHER_API_KEY}``) replays
    in CI, where there are no keys and no provider is called."""
    recording = raw.get("recording")
    mode = env.get("SWITCHYARD_RECORD_MODE") or (
        recording.get("mode") if isinstance(recording, dict) else None
    )
    if mode != "replay" or not isinstance(raw.get("providers"), list):
        return

    def unset(key: Any) -> bool:
        refs = _ENV_REF.findall(key) if isinstance(key, str) else ()
        return any(not op and name not in env for name, op, _ in refs)

    raw["providers"] = [  # copies: the caller's dicts stay as they were
        {**p, "api_key": None} if isinstance(p, dict) and unset(p.get("api_key")) else p
        for p in raw["providers"]
    ]


def _drop_disabled(raw: dict[str, Any], env: Mapping[str, str], source: str) -> None:
    """Drop providers whose ``id`` resolves empty, and the models that name them.

    Runs before the rest is substituted, so a disabled provider's other fields may name
    variables that are not set (``api_key: ${env.GROQ_API_KEY}`` beside
    ``id: ${env.GROQ_API_KEY:+groq}``)."""
    providers = raw.get("providers")
    if not isinstance(providers, list):
        return
    kept, dropped = [], set()
    for i, provider in enumerate(providers):
        raw_id = provider.get("id") if isinstance(provider, dict) else None
        if isinstance(raw_id, str):
            resolved = substitute_env(raw_id, env, f"{source}: providers[{i}].id")
            if not resolved:
                dropped.add(raw_id)
                # A model may name the provider plainly (provider_id: groq) rather than
                # repeat its switch (an id that is only ${env.X:+groq}).
                switch = _ENV_REF.fullmatch(raw_id)
                if switch is not None and switch.group(2) == ":+" and switch.group(3):
                    dropped.add(switch.group(3))
                continue
        kept.append(provider)
    # ...unless a provider that stays on has that id (${env.USE_VLLM:+local} beside
    # ${env.USE_OLLAMA:+local}: the models of "local" are the one kept's).
    # These ids were substituted in the loop above already: no variable is missing here.
    dropped -= {_resolved_id(p, env) for p in kept}
    raw["providers"] = kept
    models = raw.get("models")
    if isinstance(models, list):
        raw["models"] = [
            m
            for i, m in enumerate(models)
            if not _names_dropped(m, dropped, env, f"{source}: models[{i}].provider_id")
        ]


def _resolved_id(provider: Any, env: Mapping[str, str]) -> str | None:
    raw_id = provider.get("id") if isinstance(provider, dict) else None
    return substitute_env(raw_id, env) if isinstance(raw_id, str) else None


def _names_dropped(model: Any, dropped: set[str], env: Mapping[str, str], where: str) -> bool:
    provider_id = model.get("provider_id") if isinstance(model, dict) else None
    if not isinstance(provider_id, str):
        return False
    return provider_id in dropped or not substitute_env(provider_id, env, where)


def _format_validation(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in err.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {field}: {item['msg']}")
    return "\n".join(lines)


def config_from_dict(raw: Any, source: str, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {source}: the top level must be a mapping")
    raw = dict(raw)
    _drop_disabled(raw, env, source)
    _replay_needs_no_keys(raw, env)
    raw = _substitute_tree(raw, env, source)
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, source)) from None
    return _env_base_urls(apply_env_overrides(config, env), env)


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, refusing a key given twice in one mapping: YAML keeps the last, and a
    section pasted below another of its name would silently replace it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # "<<: *base": a key given after it overrides the merged one
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # a list as a key: SafeLoader's own error says so
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    seen[key].start_mark,
                    f"found the key {key!r} twice; keep one (YAML would silently keep the last)",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read a YAML config file; any problem is a ConfigError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"config file {path} is not UTF-8 (byte {err.start}); save it as UTF-8"
        ) from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no objects built
    except yaml.YAMLError as err:
        raise ConfigError(f"invalid YAML in {path}: {err}") from None
    return config_from_dict(raw, str(path), env)


def _env_base_urls(config: Config, env: Mapping[str, str]) -> Config:
    """A configured provider that names no base_url takes the one the environment gives
    its type (``OPENAI_BASE_URL``...), as the provider would with no config file."""
    from switchyard.providers import provider_class

    for provider in config.providers:
        if provider.base_url is not None:
            continue
        try:
            cls = provider_class(provider.type)
        except ConfigError:  # check_config says so, naming the field
            continue
        from_env = getattr(cls, "env_base_url", None)  # a plugin's class may have none
        if from_env is not None:
            provider.base_url = from_env(env)
    return config


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The built-in default: inline embeddings plus every provider the environment enables."""
    from switchyard.providers import providers_from_env

    env = os.environ if env is None else env
    providers = providers_from_env(env)
    return apply_env_overrides(Config(providers=providers), env)


def apply_env_overrides(config: Config, env: Mapping[str, str]) -> Config:
    """Apply ``SWITCHYARD_*`` variables (set by the user, or by the CLI for its workers)."""
    updates: dict[str, tuple[str, str, Any]] = {
        "SWITCHYARD_STORE_URL": ("store", "url", str),
        "SWITCHYARD_RECORD_MODE": ("recording", "mode", str),
        "SWITCHYARD_CASSETTES": ("recording", "cassettes", str),
        "SWITCHYARD_DATA_DIR": ("", "data_dir", str),
        "SWITCHYARD_API_KEYS": ("server", "api_keys", _comma_list),
    }
    raw = config.model_dump()
    changed = False
    for var, (section, key, cast) in updates.items():
        if env.get(var):
            target = raw[section] if section else raw
            target[key] = cast(env[var])
            changed = True
    if not changed:
        return config
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation(err, "environment (SWITCHYARD_*)")) from None


def _comma_list(value: str) -> list[str]:
    items = [item.strip(" \t") for item in value.split(",")]
    if not any(items):
        # "$K1,$K2" with neither set: the keys would be turned off without a word.
        raise ConfigError(f"SWITCHYARD_API_KEYS is set but holds no key ({value!r})")
    return [item for item in items if item]


def config_from_environment(env: Mapping[str, str] | None = None) -> Config:
    """What a worker process runs: ``SWITCHYARD_CONFIG`` if set, else the default."""
    env = os.environ if env is None else env
    path = env.get("SWITCHYARD_CONFIG")
    return load_config(path, env) if path else default_config(env)
