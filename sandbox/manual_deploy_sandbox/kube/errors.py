"""apiserver failures as `Status` objects, worded like the real ones.

The kubernetes client raises ApiException with the Status body and helm matches on `reason`
(NotFound, AlreadyExists, Conflict) to decide what to do next, so the shape and the reason
matter more than the prose; the prose still follows the apiserver so logs read familiar.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP failure answered as a `v1.Status` with the given code and reason."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict[str, Any]:
        """The `Status` document the apiserver would send."""
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _details(res: Any, name: str | None) -> dict[str, Any]:
    details = {"name": name or "", "group": res.group, "kind": res.plural}
    return {k: v for k, v in details.items() if v}


def not_found(res: Any, name: str | None) -> ApiError:
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', _details(res, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})


def already_exists(res: Any, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{res.qualified} "{name}" already exists', _details(res, name))


def conflict(res: Any, name: str, why: str = "the object has been modified; please apply your changes to the "
             "latest version and try again") -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {res.qualified} "{name}": {why}',
                    _details(res, name))


def invalid(res: Any, name: str, causes: list[tuple[str, Any, str]]) -> ApiError:
    """422 for field errors; `causes` are (field path, offending value, explanation)."""
    texts = [f"{field}: Invalid value: {value!r}: {why}" for field, value, why in causes]
    message = f'{res.kind}{"." + res.group if res.group else ""} "{name}" is invalid: ' + ", ".join(texts)
    details = _details(res, name) | {"kind": res.kind, "causes": [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {value!r}: {why}", "field": field}
        for field, value, why in causes]}
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
