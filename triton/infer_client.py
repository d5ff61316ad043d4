"""A thin synchronous client for Triton's HTTP/REST (KServe v2) API, local or on Azure ML.

Why a wrapper over ``tritonclient.http`` at all:

* Azure ML endpoints need ``Authorization: Bearer <key or token>`` on *every* call; the client keeps
  the headers and never shows them (not in errors, not in ``repr``).
* Tensors always travel as binary data both ways (JSON tensors are ~100x slower: a
  224x224 float image becomes ~1 MB of JSON numbers that Triton must parse).
* Every failure becomes one ``ServerError`` line with a fix, never a traceback: HTTP statuses from
  Triton or from the Azure ML front end (401, 404, 424, 429...) and connection problems alike.

One client per thread: ``tritonclient.http`` runs on gevent and its connection pool is not
thread-safe.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, TypeVar

import numpy as np
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from .errors import ServerError, UserError

T = TypeVar("T")

_FIX_BY_STATUS = {
    "400": "check the input name, shape and data type against the model's metadata",
    "401": "check the endpoint key or token (it may have expired)",
    "403": "check that this key or token may call the endpoint",
    "404": "check the endpoint URL and the model name",
    "424": "the model container answered with an error: read the deployment logs",
    "429": "too many concurrent requests: retry later or add instances",
    "502": "the endpoint is not serving yet: wait for the deployment, then retry",
    "503": "the server or model is not ready yet: wait and retry, or read the server log",
}


def _split_url(url: str, ssl: bool) -> tuple[str, bool]:
    """``tritonclient`` wants ``host:port[/path]`` and a separate ssl flag; accept a scheme too."""
    url = url.strip()
    if url.startswith("https://"):
        return url[len("https://"):].rstrip("/"), True
    if url.startswith("http://"):
        if ssl:
            raise UserError(f"the URL {url} says http:// but ssl=True was asked",
                            "use an https:// URL or turn ssl off")
        return url[len("http://"):].rstrip("/"), False
    return url.rstrip("/"), ssl


class TritonHttpClient:
    """Sync client for one Triton endpoint; ``headers`` go with every request and are never logged."""

    def __init__(self, url: str, *, ssl: bool = False, headers: dict[str, str] | None = None,
                 timeout: float = 60.0, ca_certs: str | None = None) -> None:
        self.url, self.ssl = _split_url(url, ssl)
        if not self.url:
            raise UserError("the Triton URL is empty", "give host:port, e.g. 127.0.0.1:8000")
        self._headers = dict(headers or {})
        # ca_certs: a CA bundle to trust instead of the system's (e.g. the one in REQUESTS_CA_BUNDLE)
        ssl_options = {"ca_certs": ca_certs} if (self.ssl and ca_certs) else None
        try:
            self._client = triton_http.InferenceServerClient(
                self.url, ssl=self.ssl, ssl_options=ssl_options, connection_timeout=timeout,
                network_timeout=timeout)
        except Exception as exc:
            raise UserError(f"cannot use the Triton URL {self.url}: {self._scrub(exc)}",
                            "give host:port[/path], e.g. 127.0.0.1:8000") from None

    def __repr__(self) -> str:
        scheme = "https" if self.ssl else "http"
        return f"TritonHttpClient({scheme}://{self.url}, headers={sorted(self._headers)})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "TritonHttpClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------- health
    def is_server_ready(self) -> bool:
        ready = self._call("readiness check", lambda: self._client.is_server_ready(headers=self._headers))
        if not ready:
            self._raise_if_refused()
        return ready

    def is_model_ready(self, name: str) -> bool:
        ready = self._call(f"readiness check of model '{name}'",
                           lambda: self._client.is_model_ready(name, headers=self._headers))
        if not ready:
            self._raise_if_refused()
        return ready

    def model_metadata(self, name: str) -> dict[str, Any]:
        return self._call(f"metadata of model '{name}'",
                          lambda: self._client.get_model_metadata(name, headers=self._headers))

    def model_config(self, name: str) -> dict[str, Any]:
        return self._call(f"config of model '{name}'",
                          lambda: self._client.get_model_config(name, headers=self._headers))

    def inference_statistics(self, name: str) -> dict[str, Any]:
        """``/v2/models/<name>/stats``: request and execution counts (shows whether batches formed)."""
        return self._call(f"statistics of model '{name}'",
                          lambda: self._client.get_inference_statistics(name, headers=self._headers))

    # ----------------------------------------------------------- inference
    def infer(self, model_name: str, input_name: str, tensor: np.ndarray,
              output_names: Sequence[str] = ()) -> dict[str, np.ndarray]:
        """One inference with binary tensors; ``output_names`` empty asks for every output."""
        array = np.ascontiguousarray(tensor)
        if array.dtype.kind in "US":  # str/bytes arrays travel as Triton BYTES (object arrays)
            array = array.astype(object)
        datatype = np_to_triton_dtype(array.dtype)
        if datatype is None:
            raise UserError(f"cannot send a tensor of dtype {array.dtype} to Triton",
                            "convert it to float32, float16, int64 or bytes first")
        request_input = triton_http.InferInput(input_name, list(array.shape), datatype)
        request_input.set_data_from_numpy(array, binary_data=True)
        outputs = [triton_http.InferRequestedOutput(n, binary_data=True) for n in output_names] or None
        result = self._call(
            f"inference on model '{model_name}'",
            lambda: self._client.infer(model_name, [request_input], outputs=outputs, headers=self._headers))
        names = list(output_names) or [o["name"] for o in result.get_response().get("outputs", [])]
        arrays = {}
        for name in names:
            value = result.as_numpy(name)
            if value is None:
                raise ServerError(f"model '{model_name}' returned no output '{name}'",
                                  "check the output names against the model's metadata")
            arrays[name] = value
        return arrays

    def timed_infer(self, model_name: str, input_name: str, tensor: np.ndarray,
                    output_names: Sequence[str] = ()) -> tuple[dict[str, np.ndarray], float]:
        """``infer`` plus its wall-clock latency in milliseconds (request encode to decoded result)."""
        start = time.perf_counter()
        outputs = self.infer(model_name, input_name, tensor, output_names)
        return outputs, (time.perf_counter() - start) * 1000.0

    # ------------------------------------------------------------ errors
    def _scrub(self, exc: BaseException) -> str:
        """One line, with any header value (a key or token) blanked out, whatever the library said."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for value in self._headers.values():
            if value:
                text = text.replace(str(value), "***")
                for part in str(value).split():  # e.g. the token after "Bearer"
                    if len(part) >= 8:
                        text = text.replace(part, "***")
        return text

    def _server_error(self, what: str, exc: InferenceServerException) -> ServerError:
        status = exc.status() or ""
        message = exc.message() or str(exc)
        if message.startswith("an exception occurred in the client while decoding the response"):
            message = exc.debug_details() or "no error message"  # not Triton JSON: e.g. a gateway's page
        message = self._scrub(message)[:300]
        fix = _FIX_BY_STATUS.get(status, "read the server log for details")
        prefix = f"HTTP {status}: " if status else ""
        error = ServerError(f"{what} at {self.url} failed: {prefix}{message}", fix)
        error.http_status = int(status) if str(status).isdigit() else None
        return error

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except InferenceServerException as exc:
            raise self._server_error(what, exc) from None
        except UserError:
            raise
        except Exception as exc:  # sockets, TLS, DNS, timeouts (gevent raises its own types)
            raise ServerError(
                f"cannot reach Triton at {self.url} ({what}): {type(exc).__name__}: {self._scrub(exc)}",
                "check the URL, that the server is running and that https/http matches") from None

    def _raise_if_refused(self) -> None:
        """A readiness call answers only a status code; tell 'not ready' from 'not allowed'."""
        try:
            self._client.get_server_metadata(headers=self._headers)
        except InferenceServerException as exc:
            if exc.status() in ("401", "403", "404"):
                raise self._server_error("readiness check", exc) from None
        except Exception:
            return  # the readiness answer stands; a transport problem shows on the next call
