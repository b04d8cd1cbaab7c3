"""An MLflow tracking server read through its REST API (decision 66): runs, registered model
versions and their aliases and tags, the ``MLmodel`` file and the model file it names.

No MLflow library: the portal reads a handful of endpoints with ``requests`` and never
loads what it downloads (a worker validates it as it validates an upload). Artifacts are
read through the server's artifact proxy (``mlflow-artifacts:`` URIs, what ``mlflow
server`` serves by default); a model kept in a store the server does not proxy (``s3://``,
a local path) is refused with the reason. Redirects are not followed (the address was
checked, its redirect target would not be), and credentials are the caller's to give: the
portal sends its operator's only to the operator's own server.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from ops.addresses import public_only as only_public
from ops.addresses import refused_peer, url_non_public
from ops.exceptions import ArtifactError, DetailedError, PermanentError, TransientError

API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
# Flavours the portal imports, in the order one is chosen when a model has several.
FLAVOURS = ("sklearn", "xgboost", "lightgbm", "onnx")
# MLflow's lightgbm flavour: a Booster is saved as LightGBM's text model; anything else
# (the scikit-learn API's LGBMClassifier...) as a pickle or skops file of the wrapper.
BOOSTER = "lightgbm.basic.Booster"
WRAPPER_SUFFIXES = (".pkl", ".pickle", ".skops")
MAX_MLMODEL_BYTES = 1 << 20
# The longest file name, class or format an MLmodel file may give a flavour (MLflow's are a
# few dozen characters); a longer one, or anything but a string, is refused unread.
MAX_SETTING_CHARS = 500
# The largest JSON answer read (runs with thousands of metrics stay far below it) and the
# most of an error answer read for its message: an answer is never read whole.
MAX_JSON_BYTES = 8 << 20
MAX_ERROR_BYTES = 64 << 10
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPOSITORY_TAG = "mlflow.source.git.repoURL"
# MLflow's column types and the portal's feature types (ops.schema.FEATURE_TYPES).
COLUMN_TYPES = {"double": "double", "float": "double", "integer": "integer",
                "long": "integer", "boolean": "boolean", "string": "string"}


class MlflowError(DetailedError, PermanentError):
    """The MLflow server answered, and what was asked cannot be imported."""

    code = "mlflow_error"


class MlflowNotFound(MlflowError):
    code = "mlflow_not_found"


class UnsupportedFlavour(MlflowError):
    code = "unsupported_flavour"


class MlflowUnavailable(DetailedError, TransientError):
    """The server could not be reached or answered 5xx/429: trying later may help."""

    code = "mlflow_unavailable"


@dataclass(frozen=True)
class Credentials:
    """What the portal's operator configured (``MLFLOW_TRACKING_TOKEN`` or
    ``MLFLOW_TRACKING_USERNAME`` and ``_PASSWORD``)."""

    token: str = ""
    username: str = ""
    password: str = ""


@dataclass(frozen=True)
class Source:
    """What was asked for: a registered model's version, or a run's logged model."""

    kind: str  # "model" or "run"
    name: str = ""  # registered model (kind "model")
    version: str = ""
    run_id: str = ""  # kind "run"
    artifact_path: str = "model"

    @property
    def key(self) -> str:
        """The one spelling of this source, unique per tracking server."""
        if self.kind == "model":
            return f"models:/{self.name}/{self.version}"
        return f"runs:/{self.run_id}/{self.artifact_path}"


@dataclass(frozen=True)
class Flavour:
    name: str  # one of FLAVOURS
    file: str  # relative to the model's folder
    pickled: bool  # the file is a pickle (the sklearn flavour's pickle/cloudpickle)


@dataclass(frozen=True)
class ModelFile:
    """What the ``MLmodel`` file says: the flavour and file chosen, the input schema of its
    signature (None when it has none with column names)."""

    flavour: Flavour
    input_schema: list[dict] | None
    flavours: list[str]


@dataclass
class Resolved:
    """A source looked up on the server: where its model lives and the run that made it."""

    source: Source
    artifact_uri: str
    run_id: str = ""
    experiment_id: str = ""
    run_name: str = ""
    metrics: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    commit: str = ""
    repository: str = ""
    datasets: list[dict] = field(default_factory=list)


def path_refusal(path) -> str | None:
    """Why ``path`` does not name a file inside a model's artifact folder, or None.

    Relative, ``/``-separated, no ``.`` or ``..`` segment (urllib3 resolves them before the
    request is sent: another run's artifacts, any endpoint of the server), no backslash, no
    ``%`` (no encoded dots either), no control character, at most MAX_SETTING_CHARS."""
    if not isinstance(path, str) or not path:
        return "it is not a file name"
    if len(path) > MAX_SETTING_CHARS:
        return f"it is longer than {MAX_SETTING_CHARS} characters"
    if path.startswith("/"):
        return "it is absolute (it must be relative to the model's folder)"
    if "\\" in path or "%" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "it contains a backslash, a % or a control character"
    segments = path.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        return "it has an empty, '.' or '..' segment (it must stay in the model's folder)"
    if not posixpath.normpath("/model/" + path).startswith("/model/"):  # belt and braces
        return "it leaves the model's folder"
    return None


def _inside(folder: str, relative: str, what: str) -> str:
    """``folder/relative``, refused unless ``relative`` stays under ``folder``."""
    refusal = path_refusal(relative)
    joined = f"{folder}/{relative}"
    if refusal is None and not posixpath.normpath("/" + joined).startswith(f"/{folder}/"):
        refusal = "it leaves the model's folder"
    if refusal:
        shown = relative[:100] if isinstance(relative, str) else type(relative).__name__
        raise MlflowError(f"{what} {shown!r} is refused: {refusal}", code="unsafe_path")
    return joined


def tracking_uri_refusal(url: str, *, allow_private: bool) -> str | None:
    """Why the portal will not call ``url`` (not http(s), ambiguous, or a non-public
    address the operator did not allow), or None. The webhooks' rule (ops/addresses.py)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the tracking URI must be an http:// or https:// address"
    if "\\" in url or "@" in parts.netloc:
        return "the tracking URI may not contain a backslash or a user name (user@host)"
    if allow_private:
        return None
    private = url_non_public(url)
    if private:
        return (f"{parts.hostname} is a non-public address ({private}); the operator sets "
                "MODELGATE_MLFLOW_ALLOW_PRIVATE=true to allow MLflow servers on private "
                "networks (their own MLFLOW_TRACKING_URI is always allowed)")
    return None


class TrackingServer:
    """The REST API of one MLflow tracking server."""

    def __init__(self, base_url: str, credentials: Credentials | None = None, *,
                 timeout: float = 30.0, public_only: bool = False):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment: the checked host
        if public_only:  # the address connected to is checked, not only the DNS answer
            only_public(self.session)
        credentials = credentials or Credentials()
        if credentials.token:
            self.session.headers["Authorization"] = f"Bearer {credentials.token}"
        elif credentials.username:
            self.session.auth = (credentials.username, credentials.password)

    def close(self) -> None:
        self.session.close()

    # -- requests ---------------------------------------------------------------------------

    def _request(self, path: str, params: dict | None, what: str):
        try:
            response = self.session.get(self.base_url + path, params=params,
                                        timeout=self.timeout, allow_redirects=False,
                                        stream=True)  # bodies are read capped
        except requests.Timeout as e:
            raise MlflowUnavailable(f"the MLflow server at {self.base_url} did not answer "
                                    f"within {self.timeout:.0f} s") from e
        except requests.RequestException as e:
            refused = refused_peer(e)
            if refused:
                raise MlflowError(f"the MLflow server at {self.base_url} was refused: "
                                  f"{refused}; the operator sets "
                                  "MODELGATE_MLFLOW_ALLOW_PRIVATE=true to allow MLflow "
                                  "servers on private networks",
                                  code="tracking_uri_refused") from e
            raise MlflowUnavailable(f"the MLflow server at {self.base_url} cannot be "
                                    f"reached ({type(e).__name__})") from e
        if response.status_code == 200:
            return response
        detail = _error_message(response)
        response.close()
        if response.status_code == 404:
            raise MlflowNotFound(f"MLflow at {self.base_url} has no {what}" +
                                 (f": {detail}" if detail else ""))
        if response.status_code in (401, 403):
            raise MlflowError(f"MLflow at {self.base_url} refused the portal "
                              f"(HTTP {response.status_code}): check MLFLOW_TRACKING_TOKEN "
                              "or MLFLOW_TRACKING_USERNAME/PASSWORD", code="mlflow_refused")
        if response.status_code == 429 or response.status_code >= 500:
            raise MlflowUnavailable(f"MLflow at {self.base_url} answered HTTP "
                                    f"{response.status_code} for {what}")
        if 300 <= response.status_code < 400:
            raise MlflowError(f"MLflow at {self.base_url} redirected the request for {what}; "
                              "give the server's final address", code="mlflow_redirect")
        raise MlflowError(f"MLflow at {self.base_url} answered HTTP {response.status_code} "
                          f"for {what}" + (f": {detail}" if detail else ""))

    def _json(self, path: str, params: dict, what: str) -> dict:
        response = self._request(path, params, what)
        with response:
            body = _capped(response, MAX_JSON_BYTES)
        if body is None:
            raise MlflowError(f"{self.base_url} answered {what} with more than "
                              f"{MAX_JSON_BYTES >> 20} MiB of JSON; the portal reads no more",
                              code="mlflow_error")
        try:
            return json.loads(body)
        except ValueError as e:
            raise MlflowError(f"{self.base_url} did not answer {what} with JSON: is it an "
                              "MLflow tracking server?", code="mlflow_error") from e

    # -- reads -------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict:
        return self._json(f"{API}/runs/get", {"run_id": run_id}, f"run {run_id}")["run"]

    def model_version(self, name: str, version: str) -> dict:
        return self._json(f"{API}/model-versions/get", {"name": name, "version": version},
                          f"version {version} of registered model {name}")["model_version"]

    def version_by_alias(self, name: str, alias: str) -> dict:
        return self._json(f"{API}/registered-models/alias", {"name": name, "alias": alias},
                          f"alias @{alias} of registered model {name}")["model_version"]

    def versions_by_tag(self, name: str, key: str, value: str) -> list[dict]:
        query = f"name='{_quoted(name)}' and tags.`{_quoted(key)}`='{_quoted(value)}'"
        found = self._json(f"{API}/model-versions/search",
                           {"filter": query, "max_results": 50},
                           f"versions of {name} tagged {key}={value}")
        return found.get("model_versions", [])

    def download_uri(self, name: str, version: str) -> str:
        return self._json(f"{API}/model-versions/get-download-uri",
                          {"name": name, "version": version},
                          f"version {version} of registered model {name}")["artifact_uri"]

    def logged_model(self, model_id: str) -> dict:
        return self._json(f"{API}/logged-models/{quote(model_id)}", {},
                          f"logged model {model_id}")["model"]

    def download(self, artifact_uri: str, relative: str, target: Path, max_bytes: int) -> int:
        """Stream ``relative`` under ``artifact_uri`` into ``target``; its size. Refuses a
        file larger than ``max_bytes`` (``too_large``) without keeping it."""
        path = _inside(_proxied_path(artifact_uri), relative, "the artifact path")
        response = self._request(f"{ARTIFACTS}/{quote(path)}", None, f"artifact {relative}")
        size = 0
        with response, open(target, "wb") as out:
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    target.unlink(missing_ok=True)
                    raise MlflowError(f"{relative} is larger than {max_bytes:,} bytes "
                                      "(MODELGATE_MAX_ARTIFACT_BYTES)", code="too_large")
                out.write(chunk)
        return size

    # -- a source ------------------------------------------------------------------------------

    def resolve(self, source: Source) -> Resolved:
        """Where the model of ``source`` lives and the run that made it (its metrics,
        parameters, git commit and dataset inputs)."""
        if source.kind == "model":
            version = self.model_version(source.name, source.version)
            artifact_uri = self.download_uri(source.name, source.version)
            run_id = version.get("run_id") or ""
        else:
            run_id = source.run_id
            refusal = path_refusal(source.artifact_path)
            if refusal:
                raise MlflowError(f"the run's model path {source.artifact_path[:100]!r} is "
                                  f"refused: {refusal}", code="unsafe_path")
            artifact_uri = self._run_model_uri(source)
        resolved = Resolved(source=source, artifact_uri=artifact_uri, run_id=run_id)
        if run_id:
            _read_run(resolved, self.run(run_id))
        return resolved

    def _run_model_uri(self, source: Source) -> str:
        """MLflow 3 logs a run's model as a logged model of its own (the run's outputs name
        it); MLflow 2 kept it among the run's artifacts, under the artifact path."""
        run = self.run(source.run_id)
        for output in (run.get("outputs") or {}).get("model_outputs", []):
            model = self.logged_model(output["model_id"])
            if model["info"].get("name") == source.artifact_path:
                return model["info"]["artifact_uri"]
        return run["info"]["artifact_uri"].rstrip("/") + "/" + source.artifact_path.strip("/")

    def model_file(self, resolved: Resolved) -> ModelFile:
        """The ``MLmodel`` file of a resolved source, read."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="modelgate-mlmodel-") as folder:
            target = Path(folder) / "MLmodel"
            try:
                self.download(resolved.artifact_uri, "MLmodel", target, MAX_MLMODEL_BYTES)
            except MlflowNotFound as e:
                raise MlflowNotFound(f"{resolved.source.key} has no MLmodel file at "
                                     f"{resolved.artifact_uri}: is it an MLflow model?") from e
            return read_mlmodel(target.read_text(errors="replace"))


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _capped(response, cap: int) -> bytes | None:
    """At most ``cap`` bytes of a streamed answer's (decoded) body; None when it has more."""
    try:
        body = response.raw.read(cap + 1, decode_content=True)
    except Exception as e:  # noqa: BLE001 - urllib3's read errors: a broken answer
        raise MlflowUnavailable(f"the answer could not be read ({type(e).__name__})") from e
    return None if len(body) > cap else body


def _error_message(response) -> str:
    try:
        body = response.raw.read(MAX_ERROR_BYTES + 1, decode_content=True)
    except Exception:  # noqa: BLE001 - no message then
        return ""
    if len(body) > MAX_ERROR_BYTES:
        return ""
    try:
        body = json.loads(body)
    except ValueError:
        return ""
    return str(body.get("message", ""))[:300] if isinstance(body, dict) else ""


def _proxied_path(artifact_uri: str) -> str:
    """The path under the server's artifact proxy of an ``mlflow-artifacts:`` URI."""
    parts = urlsplit(artifact_uri)
    if parts.scheme != "mlflow-artifacts":
        raise MlflowError(f"MLflow keeps this model at {artifact_uri}, which the portal does "
                          "not read; serve artifacts through the tracking server (mlflow "
                          "server's default artifact proxy, mlflow-artifacts:)",
                          code="unsupported_artifact_store")
    path = parts.path.strip("/")
    if not path or "\\" in path or any(s in ("", ".", "..") for s in path.split("/")):
        raise MlflowError(f"MLflow keeps this model at {artifact_uri[:200]}, a path the "
                          "portal does not follow (empty, '.' or '..' segments)",
                          code="unsafe_path")
    return path


def _read_run(resolved: Resolved, run: dict) -> None:
    info, data = run.get("info", {}), run.get("data", {})
    resolved.experiment_id = str(info.get("experiment_id", ""))
    resolved.run_name = str(info.get("run_name", ""))
    resolved.metrics = {m["key"]: m["value"] for m in data.get("metrics", [])
                        if isinstance(m.get("value"), int | float) and m["value"] == m["value"]}
    resolved.params = {p["key"]: p.get("value", "") for p in data.get("params", [])}
    tags = {t["key"]: t.get("value", "") for t in data.get("tags", [])}
    resolved.commit = str(tags.get(GIT_COMMIT_TAG, "")).lower()
    resolved.repository = str(tags.get(GIT_REPOSITORY_TAG, ""))[:300]
    for entry in (run.get("inputs") or {}).get("dataset_inputs", []):
        dataset = entry.get("dataset", {})
        item = {key: dataset.get(key, "") for key in ("name", "digest", "source_type",
                                                       "source")}
        item["context"] = next((t.get("value", "") for t in entry.get("tags", [])
                                if t.get("key") == "mlflow.data.context"), "")
        try:
            item["profile"] = json.loads(dataset.get("profile") or "{}")
        except ValueError:
            item["profile"] = {}
        resolved.datasets.append(item)


def read_mlmodel(text: str) -> ModelFile:
    """Choose the flavour and file of an ``MLmodel`` document and read its signature."""
    import yaml

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MlflowError(f"the MLmodel file is not YAML: {e}", code="mlflow_error") from e
    except RecursionError as e:
        raise MlflowError("the MLmodel file is not an MLflow model's: its YAML is nested "
                          "deeper than the portal reads", code="mlflow_error") from e
    except Exception as e:  # noqa: BLE001 - a value YAML cannot build (a 30th of February...)
        raise MlflowError(f"the MLmodel file cannot be read ({type(e).__name__})",
                          code="mlflow_error") from e
    flavours = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavours, dict) or not flavours:
        raise MlflowError("the MLmodel file names no flavours", code="mlflow_error")
    if not all(isinstance(name, str) for name in flavours):
        raise MlflowError("the MLmodel file's flavours are not all named by strings: is it "
                          "an MLflow model's?", code="mlflow_error")
    names = sorted(flavours)
    chosen = next((name for name in FLAVOURS if name in flavours), None)
    if chosen is None:
        shown = ", ".join(name[:50] for name in names[:10]) + (", ..." if len(names) > 10
                                                               else "")
        raise UnsupportedFlavour(
            f"the MLflow model's flavours are {shown}; the portal imports "
            + ", ".join(FLAVOURS) + " models")
    return ModelFile(flavour=_flavour(chosen, flavours[chosen]),
                     input_schema=signature_schema(document.get("signature")),
                     flavours=names)


def _setting(name: str, conf: dict, key: str, default: str = "") -> str:
    """A flavour's string setting (``data``, ``pickled_model``...): a string of at most
    MAX_SETTING_CHARS, else refused. Never ``str()`` of what YAML built: an alias of
    aliases expands to gigabytes."""
    value = conf.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > MAX_SETTING_CHARS:
        raise MlflowError(f"the MLmodel file's {name} flavour gives {key} as "
                          + (f"a {type(value).__name__}" if not isinstance(value, str) else
                             f"{len(value):,} characters")
                          + f"; MLflow writes a string (of at most {MAX_SETTING_CHARS})",
                          code="mlflow_error")
    return value


def _flavour(name: str, conf) -> Flavour:
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise MlflowError(f"the MLmodel file's {name} flavour is a {type(conf).__name__}, "
                          "not the settings MLflow writes (data, model_class...)",
                          code="mlflow_error")
    if name == "sklearn":
        fmt = _setting(name, conf, "serialization_format") or "cloudpickle"
        file = (_setting(name, conf, "pickled_model")
                or ("model.skops" if fmt == "skops" else "model.pkl"))
        return Flavour(name, _flavour_file(name, file), pickled=fmt != "skops")
    file = _setting(name, conf, "data")
    if not file:
        raise MlflowError(f"the MLmodel file's {name} flavour names no model file",
                          code="mlflow_error")
    file = _flavour_file(name, file)
    model_class = _setting(name, conf, "model_class", BOOSTER)
    fmt = _setting(name, conf, "serialization_format")
    if name == "lightgbm" and (file.endswith(WRAPPER_SUFFIXES) or model_class != BOOSTER):
        _refuse_lightgbm_wrapper(file, model_class, fmt)
    return Flavour(name, file, pickled=False)


def _flavour_file(name: str, file: str) -> str:
    """The flavour's file, refused unless it stays inside the model's folder."""
    refusal = path_refusal(file)
    if refusal:
        raise MlflowError(f"the MLmodel file's {name} flavour names the file {file[:100]!r}, "
                          f"refused: {refusal}", code="unsafe_path")
    return file


def _refuse_lightgbm_wrapper(file: str, model_class: str, fmt: str) -> None:
    """MLflow saves LightGBM's scikit-learn API models (``LGBMClassifier``...) as a pickle
    or a skops file of the wrapper, never as LightGBM's text model: the portal loads
    neither (decision 62), and the booster inside is what can be imported."""
    if model_class == BOOSTER:
        model_class = "a LightGBM scikit-learn model"
    fmt = fmt or ("skops" if file.endswith(".skops") else "cloudpickle")
    how = ("log the booster instead, saved as LightGBM's text model: "
           "mlflow.lightgbm.log_model(model.booster_, ...)")
    if fmt == "skops":
        raise UnsupportedFlavour(f"MLflow's lightgbm flavour holds {file}, a skops file of "
                                 f"{model_class} (LightGBM's scikit-learn API), which the "
                                 f"portal does not load; {how}")
    kind = "a pickle" + (f" ({fmt})" if fmt != "pickle" else "")
    raise MlflowError(f"MLflow's lightgbm flavour holds {file}, {kind} of "
                      f"{model_class} (LightGBM's scikit-learn API): a pickle can run code "
                      f"when loaded and the portal never loads one of these; {how}",
                      code="unsafe_artifact")


def check_flavour_file(flavour: Flavour, head: bytes) -> None:
    """Refuse, in words, a downloaded xgboost, lightgbm or onnx flavour file that is not
    in its framework's own format (``head``: its first bytes; nothing is loaded): a pickle
    under any name, XGBoost's deprecated binary format."""
    from ops import native
    from ops.artifacts import PICKLE, detect_format

    if flavour.name == "sklearn":
        return
    try:
        found = detect_format(head)
    except ArtifactError:
        found = None
    if found == flavour.name:
        return
    if found == PICKLE:
        raise MlflowError(f"MLflow's {flavour.name} flavour file {flavour.file} is a pickle, "
                          f"not {native.NAMES[flavour.name]}'s own format: a pickle can run "
                          "code when loaded and is not imported", code="unsafe_artifact")
    hint = {"xgboost": "XGBoost's JSON or UBJSON model (XGBoost before 2.1 wrote its "
                       "deprecated binary format for model_format='xgb': log it with "
                       "model_format='json' or 'ubj')",
            "lightgbm": "LightGBM's text model (log a Booster)",
            "onnx": "an ONNX ModelProto"}[flavour.name]
    raise MlflowError(f"MLflow's {flavour.name} flavour file {flavour.file} is not "
                      f"{hint}", code="not_a_model")


def signature_schema(signature) -> list[dict] | None:
    """The portal's input schema of an MLflow signature's inputs; None when there is no
    signature or its inputs are an unnamed tensor (the worker reads the model's own
    feature names then). A column type the portal has no equivalent for is refused."""
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return None
    if not isinstance(signature["inputs"], str):  # MLflow writes its inputs as JSON text
        raise MlflowError("the model's signature cannot be read: its inputs are a "
                          f"{type(signature['inputs']).__name__}, not JSON text",
                          code="bad_signature")
    try:
        inputs = json.loads(signature["inputs"])
    except (ValueError, RecursionError) as e:
        raise MlflowError("the model's signature cannot be read: "
                          + (str(e) if isinstance(e, ValueError) else "nested too deep"),
                          code="bad_signature") from e
    if not isinstance(inputs, list) or not inputs:
        return None
    if any(not isinstance(c, dict) or "name" not in c for c in inputs):
        return None  # a tensor signature: no names to check the model against
    if any(not isinstance(c["name"], str) for c in inputs):
        raise MlflowError("the signature's inputs are not all named by strings",
                          code="bad_signature")
    schema = []
    for column in inputs:
        kind = COLUMN_TYPES.get(str(column.get("type")))
        if kind is None:
            raise MlflowError(f"the signature's input {column['name']!r} is of type "
                              f"{column.get('type')!r}, which the portal cannot feed a model "
                              "(double, float, integer, long, boolean and string can be)",
                              code="bad_signature")
        schema.append({"name": str(column["name"]), "type": kind,
                       "nullable": column.get("required") is False})
    return schema
